// What a person does in each real app, for real_app.mjs: browse
// anonymously, log in, do real work, log out, and see the app's own view
// of being logged out. Every step clicks what a person would click.
//
// Each app also says how its login and logout reach cloakroom, since the
// session checks depend on it:
// - rotatesAtLogin: whether SPEC §8.4 rotates the session id at this login
//   (a POST on one of the default login_paths that changes the jar).
// - loginRequest, logoutRequest: named in failure messages.

const django = {
  rotatesAtLogin: true,
  loginRequest: 'POST /admin/login/',
  logoutRequest: 'POST /admin/logout/',
  async browse(h) {
    // The login page sets Django's csrftoken: a session before login.
    await h.go('open the admin', '/admin/', { path: '/admin/login/', text: /Username/ });
  },
  async login(h) {
    await h.page.fill('#id_username', h.user);
    await h.page.fill('#id_password', h.password);
    await h.submit('log in', () => h.page.click('input[type=submit]'), {
      path: '/admin/',
      text: /Site administration/,
    });
  },
  async work(h) {
    await h.go('open the add-group form', '/admin/auth/group/add/', { path: '/admin/auth/group/add/' });
    await h.page.fill('#id_name', 'editors');
    await h.submit('add a group', () => h.page.click('input[name=_save]'), {
      path: '/admin/auth/group/',
      text: /editors.{0,3} was added successfully/,
    });

    await h.go('open the user list', '/admin/auth/user/', { path: '/admin/auth/user/' });
    await h.submit('open the user', () => h.page.click(`#result_list th a:text-is("${h.user}")`), {
      path: /^\/admin\/auth\/user\/\d+\/change\/$/,
    });
    const changeUrl = h.page.url().slice(h.page.url().indexOf('/admin/'));
    await h.page.fill('#id_first_name', 'Ada');
    await h.page.fill('#id_last_name', 'Lovelace');
    // The admin's two-list group widget, as a person uses it.
    await h.page.selectOption('#id_groups_from', { label: 'editors' });
    await h.page.click('#id_groups_add');
    await h.submit('edit the user', () => h.page.click('input[name=_save]'), {
      path: '/admin/auth/user/',
      text: /was changed successfully/,
    });

    await h.go('reopen the user', changeUrl, { path: changeUrl });
    h.expect((await h.page.inputValue('#id_first_name')) === 'Ada', 'the edited first name was not saved');
    const groups = await h.page.$$eval('#id_groups_to option', (os) => os.map((o) => o.textContent.trim()));
    h.expect(groups.includes('editors'), `the user is not in the new group (groups: ${groups})`);
  },
  async logout(h) {
    // Django 5's admin logs out with a POST from the user-tools form.
    await h.submit('log out', () => h.page.click('#logout-form button'), {
      path: '/admin/logout/',
      text: /Logged out/,
    });
  },
  async afterLogout(h) {
    await h.go('open the admin again', '/admin/', { path: '/admin/login/' });
  },
};

const trac = {
  // Stock Trac logs in with HTTP authentication: the "Login" link is a GET
  // of /login that tracd answers 401 until the browser sends credentials.
  // That GET carries `Authorization`, so it is a login submission and the
  // anonymous session's id rotates (SPEC §8.4).
  rotatesAtLogin: true,
  loginRequest: 'GET /login (HTTP basic authentication)',
  logoutRequest: 'POST /logout',
  contextOptions: ({ origin, user, password }) => ({
    httpCredentials: { username: user, password, origin },
  }),
  async browse(h) {
    // Trac sets its form token and anonymous session cookies here.
    await h.go('open the wiki', '/', { path: '/', text: /Welcome to Trac/ });
  },
  async login(h) {
    await h.submit('log in', () => h.page.click('#metanav a[href="/login"]'), {
      path: '/',
      text: new RegExp(`logged in as ${h.user}`),
    });
  },
  async work(h) {
    await h.go('open the new-ticket form', '/newticket', { path: '/newticket' });
    await h.page.fill('#field-summary', 'The proxy keeps my cookies');
    await h.page.fill('#field-description', 'Filed through cloakroom, in a real browser.');
    await h.submit('create a ticket', () => h.page.click('input[name=submit]'), {
      path: /^\/ticket\/\d+$/,
      text: /The proxy keeps my cookies/,
    });

    await h.go('open the wiki editor', '/wiki/SandBox?action=edit', { path: '/wiki/SandBox' });
    await h.page.fill('#text', 'Edited through cloakroom by a real browser.');
    await h.page.fill('#comment', 'compatibility suite');
    await h.submit('save the wiki page', () => h.page.click('#save'), {
      path: '/wiki/SandBox',
      text: /Edited through cloakroom by a real browser\./,
    });
  },
  async logout(h) {
    await h.submit('log out', () => h.page.click('#logout button'), { text: /Login/ });
    h.expect(!/logged in as/.test(await h.page.innerText('body')), 'Trac still shows a user after logout');
  },
  async afterLogout(h) {
    await h.go('open the wiki again', '/wiki/SandBox', { path: '/wiki/SandBox', text: /Login/ });
    h.expect(!/logged in as/.test(await h.page.innerText('body')), 'Trac shows a user after logout');
  },
};

const flask = {
  // Nothing before login sets a cookie: the session starts at login.
  rotatesAtLogin: true,
  loginRequest: 'POST /login',
  logoutRequest: 'GET /logout',
  async browse(h) {
    await h.go('open the app', '/', { path: '/', text: /Log in/ });
  },
  async login(h) {
    await h.submit('open the login form', () => h.page.click('a[href="/login"]'), { path: '/login' });
    await h.page.fill('input[name=username]', h.user);
    await h.page.fill('input[name=password]', h.password);
    await h.submit('log in', () => h.page.click('button'), {
      path: '/dashboard',
      text: new RegExp(`${h.user}: visit 1\\b`),
    });
  },
  async work(h) {
    // The counter lives in Flask's session cookie, i.e. in cloakroom's jar.
    await h.go('count a visit', '/dashboard', { text: new RegExp(`${h.user}: visit 2\\b`) });
    // The cart is the app's JSON API, called from the page like a script would.
    for (const item of ['apple', 'pear']) {
      const cart = await h.page.evaluate(async (item) => {
        const r = await fetch('/cart', { method: 'POST', body: new URLSearchParams({ item }) });
        return { status: r.status, body: await r.text() };
      }, item);
      h.expect(cart.status === 200, `adding ${item} to the cart: ${cart.status} ${cart.body}`);
    }
    await h.go('see the cart', '/dashboard', {
      text: new RegExp(`${h.user}: visit 3, cart \\['apple', 'pear'\\]`),
    });
  },
  async logout(h) {
    await h.go('log out', '/logout', { path: '/', text: /Log in/ });
  },
  async afterLogout(h) {
    await h.go('open the dashboard again', '/dashboard', { path: '/login' });
  },
};

export const APPS = { django, trac, flask };

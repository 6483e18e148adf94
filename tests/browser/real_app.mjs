// Drives one real, unchanged web app through cloakroom in Debian's
// headless Chromium (run by tests/real_apps.rs): browse anonymously, log
// in, do real work, log out, and watch everything the browser holds and
// every address it is sent to.
//
//   CLOAKROOM_APP_USER=… CLOAKROOM_APP_PASSWORD=… \
//     node tests/browser/real_app.mjs django|trac|flask https://localhost:PORT http://127.0.0.1:UPSTREAM
//
// The flows themselves are in apps.mjs. Prints one JSON line on stdout:
// the steps taken, the session handles seen (never a cookie value) and
// `failures`, the list of broken expectations. Exits 0 only when that list
// is empty, 1 when a check failed, 2 when the browser could not be driven.

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { APPS } from './apps.mjs';

const SESSION_COOKIE = '__Host-cloakroom';
const STEP_TIMEOUT_MS = 15_000;
const REPLAY_TIMEOUT_MS = 10_000;

const [appName, origin, upstream] = process.argv.slice(2);
const app = APPS[appName];
if (!app || !origin || !upstream) {
  console.error(`usage: node real_app.mjs ${Object.keys(APPS).join('|')} https://localhost:PORT http://UPSTREAM`);
  process.exit(2);
}
const user = process.env.CLOAKROOM_APP_USER ?? '';
const password = process.env.CLOAKROOM_APP_PASSWORD ?? '';
// What must never reach the browser: the upstream's host:port.
const upstreamHost = new URL(upstream).host;

// As in login.mjs: no network beyond loopback, never a downloaded browser.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const profile = mkdtempSync(join(tmpdir(), 'cloakroom-chromium-'));
const context = await chromium
  .launchPersistentContext(profile, {
    executablePath: process.env.CLOAKROOM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    ignoreHTTPSErrors: true, // the proxy's self-signed certificate
    timeout: 30_000,
    ...(app.contextOptions?.({ origin, user, password }) ?? {}),
  })
  .catch((e) => {
    rmSync(profile, { recursive: true, force: true });
    console.error(`cannot launch Chromium: ${e.message}`);
    process.exit(2);
  });

const report = {
  app: appName,
  origin,
  upstream,
  steps: [],
  cookie_names: [],
  session: {},
  failures: [],
};
const fail = (what) => {
  if (!report.failures.includes(what)) report.failures.push(what);
};
const expect = (ok, what) => {
  if (!ok) fail(what);
};

// Every URL the browser asked for and every Location it was given, redirect
// hops included (a route handler would not see those).
const requested = [];
const locations = [];
context.on('request', (r) => requested.push(r.url()));
context.on('response', (r) => {
  const location = r.headers()['location'];
  if (location !== undefined) locations.push({ from: r.url(), status: r.status(), location });
});

const cookieNames = new Set();
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(STEP_TIMEOUT_MS);

/// First-party cookie facts after each step: only cloakroom's, HttpOnly
/// and Secure, and nothing a script can read.
async function checkCookies(step) {
  for (const c of await context.cookies()) {
    cookieNames.add(c.name);
    if (c.name !== SESSION_COOKIE) {
      fail(`${step}: the browser holds the cookie ${c.name} (${c.domain}${c.path})`);
      continue;
    }
    expect(c.httpOnly === true, `${step}: ${SESSION_COOKIE} is not HttpOnly`);
    expect(c.secure === true, `${step}: ${SESSION_COOKIE} is not Secure`);
    expect(c.domain === 'localhost' && c.path === '/', `${step}: ${SESSION_COOKIE} is set for ${c.domain}${c.path}`);
  }
  const readable = await page.evaluate(() => document.cookie).catch(() => '');
  expect(readable === '', `${step}: document.cookie reads ${readable.split(';').map((kv) => kv.split('=')[0].trim())}`);
}

const bodyText = async () => (await page.innerText('body').catch(() => '')).replace(/\s+/g, ' ').trim();

/// After a navigation: the page is on the proxy's origin, did not fail, names
/// no upstream address and matches `want` ({path, text}: strings or
/// RegExps). A page that is not what the flow needs stops the run (thrown);
/// the other findings are collected.
async function landed(step, response, want = {}) {
  const url = page.url();
  const status = response?.status() ?? null;
  const text = await bodyText();
  report.steps.push({ step, url, status, title: await page.title().catch(() => '') });
  if (!url.startsWith(`${origin}/`)) {
    throw new Error(`${step}: the browser left the proxy for ${url}`);
  }
  const html = await page.content();
  expect(!html.includes(upstreamHost), `${step}: the page at ${url} names the upstream's address ${upstreamHost}`);
  await checkCookies(step);
  const path = url.slice(origin.length);
  if (status !== null && status >= 400) {
    throw new Error(`${step}: ${status} at ${path}: ${text.slice(0, 400)}`);
  }
  const matches = (want, got) => (want instanceof RegExp ? want.test(got) : got === want);
  if (want.path !== undefined && !matches(want.path, new URL(url).pathname)) {
    throw new Error(`${step}: landed on ${path}, not ${want.path}: ${text.slice(0, 300)}`);
  }
  if (want.text !== undefined && !want.text.test(text)) {
    throw new Error(`${step}: ${path} does not show ${want.text}: ${text.slice(0, 300)}`);
  }
}

/// A navigation that failed outright (a refused connection, a TLS error at
/// an address the browser was sent to) fails the step it belongs to.
async function named(step, navigation) {
  try {
    return await navigation;
  } catch (e) {
    throw new Error(`${step}: ${e.message.split('\n')[0]} (at ${page.url()})`);
  }
}

/// The helpers the flows in apps.mjs use.
const h = {
  page,
  user,
  password,
  expect,
  // Opens `path` like typing it into the address bar.
  async go(step, path, want) {
    const response = await named(step, page.goto(`${origin}${path}`));
    await landed(step, response, want);
  },
  // Runs `action` (a click that submits or follows a link) and waits for
  // the navigation it starts, redirects included.
  async submit(step, action, want) {
    const [response] = await named(step, Promise.all([page.waitForNavigation({ waitUntil: 'load' }), action()]));
    await landed(step, response, want);
  },
};

async function sessionValue() {
  const c = (await context.cookies()).find((k) => k.name === SESSION_COOKIE && k.domain === 'localhost');
  return c?.value ?? null;
}

/// The log and admin API name a session by the first 16 hex digits of
/// SHA-256 over its 32 id bytes (SPEC §4.1); the report carries only that.
function handle(value) {
  if (value === null) return null;
  const id = Buffer.from(value.split('.')[0], 'base64url');
  return createHash('sha256').update(id).digest('hex').slice(0, 16);
}

/// `GET /.cloakroom/session` with only this cookie value, outside the
/// browser: a live session answers `expires_at`; an ended one answers none
/// and clears the cookie (SPEC §4.3, §8.7).
function replay(value) {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL('/.cloakroom/session', origin),
      {
        rejectUnauthorized: false,
        headers: { cookie: `${SESSION_COOKIE}=${value}`, accept: 'application/json' },
        timeout: REPLAY_TIMEOUT_MS,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          const cleared = (res.headers['set-cookie'] ?? []).some(
            (sc) => sc.startsWith(`${SESSION_COOKIE}=`) && /max-age=0/i.test(sc),
          );
          let expiresAt = null;
          try {
            expiresAt = JSON.parse(body).expires_at ?? null;
          } catch {}
          resolve({ status: res.statusCode, cleared, live: expiresAt !== null && !cleared });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('GET /.cloakroom/session timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function loginChecks(before, after) {
  const s = report.session;
  s.before_login = handle(before);
  s.after_login = handle(after);
  if (after === null) {
    fail(`log in: no ${SESSION_COOKIE} cookie after logging in`);
    return;
  }
  // Proves the replay check can tell a live session from an ended one.
  s.after_login_replayed = await replay(after);
  expect(s.after_login_replayed.live, 'log in: the session id issued at login does not name a live session');
  if (!app.rotatesAtLogin) return;
  s.rotated = before !== after;
  expect(s.rotated, `log in: the session id did not rotate at login (${app.loginRequest}; SPEC §4.6, §8.4)`);
  if (before !== null && s.rotated) {
    s.before_login_replayed = await replay(before);
    expect(
      !s.before_login_replayed.live && s.before_login_replayed.cleared,
      'log in: the pre-login session id still works after login (SPEC §4.6)',
    );
  }
}

async function logoutChecks(before, after) {
  const s = report.session;
  s.before_logout = handle(before);
  s.after_logout = handle(after);
  if (before === null) return;
  expect(after !== before, `log out: the browser still holds the logged-in session id after ${app.logoutRequest} (SPEC §8.7a)`);
  s.before_logout_replayed = await replay(before);
  expect(
    !s.before_logout_replayed.live && s.before_logout_replayed.cleared,
    `log out: the logged-in session id still names a live session after ${app.logoutRequest} (SPEC §8.7a)`,
  );
}

try {
  await app.browse(h);
  const anonymous = await sessionValue();
  report.session.before_login = handle(anonymous);
  await app.login(h);
  const loggedIn = await sessionValue();
  await loginChecks(anonymous, loggedIn);
  await app.work(h);
  const working = await sessionValue();
  await app.logout(h);
  await logoutChecks(working, await sessionValue());
  await app.afterLogout(h);
} catch (e) {
  fail(e.message.split('\n')[0]);
} finally {
  report.cookie_names = [...cookieNames];
  for (const url of requested) {
    if (!/^https?:/.test(url)) continue;
    expect(new URL(url).origin === origin, `the browser requested ${url}, off the proxy's origin`);
    expect(!url.includes(upstreamHost), `the browser requested ${url}, naming the upstream`);
  }
  for (const { from, status, location } of locations) {
    expect(!location.includes(upstreamHost), `${status} from ${from} has Location ${location}, naming the upstream`);
  }
  report.requests = requested.length;
  report.locations = locations;
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(report));
process.exit(report.failures.length === 0 ? 0 : 1);

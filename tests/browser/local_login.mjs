// Signs in with cloakroom's own login form (provider = "local") in Debian's
// headless Chromium, starting from a page of an `auth = "required"` route,
// and reports what the browser saw (run by tests/browser.rs).
//
//   node tests/browser/local_login.mjs https://localhost:PORT
//
// Prints one JSON line on stdout: what was observed plus `failures`, the
// list of broken expectations. Exits 0 only when that list is empty, 1 when
// a check failed, 2 when the browser could not be driven at all.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const SESSION_COOKIE = '__Host-cloakroom';
const CSRF_COOKIE = '__Host-cloakroom-login';
const TARGET = '/reports/q?year=2026';
const STEP_TIMEOUT_MS = 15_000;

const origin = process.argv[2];
if (!origin) {
  console.error('usage: node local_login.mjs https://localhost:PORT');
  process.exit(2);
}

// No network beyond loopback, and never a browser download.
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
    javaScriptEnabled: false, // the form must work without it
    timeout: 30_000,
  })
  .catch((e) => {
    rmSync(profile, { recursive: true, force: true });
    console.error(`cannot launch Chromium: ${e.message}`);
    process.exit(2);
  });

const report = { origin, failures: [], console: [], requests: [] };
const expect = (ok, what) => {
  if (!ok) report.failures.push(what);
};

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  // A CSP refusal (of the inline style, say) shows up on the console.
  page.on('console', (m) => report.console.push(`${m.type()}: ${m.text()}`));
  // Every request the pages make, to prove nothing leaves the origin.
  page.on('request', (r) => report.requests.push(r.url()));

  // 1. A protected page sends the browser to the form, keeping the path.
  await page.goto(`${origin}${TARGET}`);
  // (URL predicates: in a glob, `?` is a wildcard.)
  await page.waitForURL((u) => u.pathname === '/.cloakroom/login');
  report.login_url = page.url();

  // 2. A wrong password: the form again, with an announced message.
  await page.getByLabel('User name').fill('alice');
  await page.getByLabel('Password').fill('not the password');
  await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Sign in' }).click()]);
  report.alert = ((await page.getByRole('alert').textContent().catch(() => null)) ?? '').trim();
  expect(/wrong user name or password/i.test(report.alert), `no alert after a wrong password: ${report.alert}`);
  expect(page.url().includes('/.cloakroom/login'), `a wrong password left the form: ${page.url()}`);

  // 3. The right one: back on the page first asked for, authenticated.
  await page.getByLabel('User name').fill('alice');
  await page.getByLabel('Password').fill('wonderland');
  await Promise.all([
    page.waitForURL((u) => u.pathname + u.search === TARGET),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  report.final_url = page.url();
  const echo = JSON.parse(await page.textContent('body'));
  const header = (name) => (echo.headers.find(([n]) => n === name) ?? [])[1];
  report.upstream_user = header('x-forwarded-user') ?? null;
  report.upstream_groups = header('x-forwarded-groups') ?? null;
  expect(report.final_url === `${origin}${TARGET}`, `landed on ${report.final_url}`);
  expect(report.upstream_user === 'alice', `the app saw user ${report.upstream_user}`);

  // 4. What the browser holds: the HttpOnly session cookie; the form's
  // CSRF cookie was cleared by the login.
  const cookies = await context.cookies();
  report.cookies = cookies.map(({ value, ...rest }) => ({ ...rest, value_len: value.length }));
  const session = cookies.find((k) => k.name === SESSION_COOKIE);
  expect(session?.httpOnly === true && session?.secure === true, 'no HttpOnly, Secure session cookie');
  expect(!cookies.some((k) => k.name === CSRF_COOKIE), 'the CSRF cookie outlived the login');

  const refused = report.console.filter((l) => /Refused|Content Security Policy/i.test(l));
  expect(refused.length === 0, `CSP refusals: ${refused.join(' | ')}`);
  const foreign = report.requests.filter((u) => !u.startsWith(origin));
  expect(foreign.length === 0, `requests off the origin: ${foreign.join(' ')}`);
} catch (e) {
  report.failures.push(`browser step failed: ${e.message.split('\n')[0]}`);
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(report));
process.exit(report.failures.length === 0 ? 0 : 1);

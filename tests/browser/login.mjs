// Logs into examples/legacy_app.py through cloakroom in Debian's headless
// Chromium and reports what the browser holds (run by tests/browser.rs).
//
//   node tests/browser/login.mjs https://localhost:PORT
//
// Prints one JSON line on stdout: what was observed plus `failures`, the
// list of broken expectations. Exits 0 only when that list is empty, 1 when
// a check failed, 2 when the browser could not be driven at all.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const SESSION_COOKIE = '__Host-cloakroom';
const FLASK_COOKIE = 'session';
const STEP_TIMEOUT_MS = 15_000;

const origin = process.argv[2];
if (!origin) {
  console.error('usage: node login.mjs https://localhost:PORT');
  process.exit(2);
}

// The machine has no network beyond package registries: keep Chromium from
// reaching out, and never let Playwright fetch a browser of its own.
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

// Playwright refuses `--user-data-dir` in args; a persistent context on a
// fresh directory is the same thing.
const profile = mkdtempSync(join(tmpdir(), 'cloakroom-chromium-'));
const context = await chromium
  .launchPersistentContext(profile, {
    executablePath: process.env.CLOAKROOM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
    ignoreHTTPSErrors: true, // the proxy's self-signed certificate
    timeout: 30_000,
  })
  .catch((e) => {
    rmSync(profile, { recursive: true, force: true });
    console.error(`cannot launch Chromium: ${e.message}`);
    process.exit(2);
  });

const report = { origin, failures: [] };
const expect = (ok, what) => {
  if (!ok) report.failures.push(what);
};

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);

  await page.goto(`${origin}/login`);
  await page.fill('input[name=username]', 'alice');
  await page.fill('input[name=password]', 'wonderland');
  await Promise.all([page.waitForURL('**/dashboard'), page.click('button')]);
  report.dashboard = (await page.textContent('body')).trim();
  expect(/alice: visit 1\b/.test(report.dashboard), 'dashboard does not show alice logged in');

  // A second page load proves the login lives on in the proxy's jar.
  await page.reload();
  report.dashboard_again = (await page.textContent('body')).trim();
  expect(/alice: visit 2\b/.test(report.dashboard_again), 'the login did not survive a reload');

  // What scripts can read: nothing, since the only cookie is HttpOnly.
  report.document_cookie = await page.evaluate(() => document.cookie);
  expect(!report.document_cookie.includes(SESSION_COOKIE), 'document.cookie exposes the session cookie');
  expect(!/(^|;\s*)session=/.test(report.document_cookie), "document.cookie exposes Flask's session cookie");
  expect(report.document_cookie === '', 'document.cookie is not empty');

  // What the browser stores, for every site.
  const cookies = await context.cookies();
  // Values are session secrets: report everything else.
  report.cookies = cookies.map(({ value, ...rest }) => ({ ...rest, value_len: value.length }));
  expect(report.cookies.length === 1, `the browser holds ${report.cookies.length} cookies, not 1`);
  const c = cookies.find((k) => k.name === SESSION_COOKIE);
  expect(c !== undefined, `no ${SESSION_COOKIE} cookie in the browser`);
  expect(!cookies.some((k) => k.name === FLASK_COOKIE), "Flask's session cookie reached the browser");
  if (c) {
    expect(c.httpOnly === true, 'the session cookie is not HttpOnly');
    expect(c.secure === true, 'the session cookie is not Secure');
    expect(c.sameSite === 'Lax', `the session cookie is SameSite=${c.sameSite}, not Lax`);
    expect(c.path === '/', `the session cookie has Path=${c.path}`);
    expect(c.domain === 'localhost', `the session cookie has domain ${c.domain}`);
  }
} catch (e) {
  report.failures.push(`browser step failed: ${e.message.split('\n')[0]}`);
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

console.log(JSON.stringify(report));
process.exit(report.failures.length === 0 ? 0 : 1);

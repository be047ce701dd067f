// Shared by the portal scenarios: Debian's Chromium through playwright-core, sign-in, screenshots, checks.
// Each scenario is a node script run by tests/portal/test_portal.py with PORTAL_URL (a platform it started)
// and PORTAL_FIXTURE (JSON: accounts and ids it prepared). A scenario prints "ok <step>" lines and exits 0,
// or prints the failure and exits 1.
import {chromium} from 'playwright-core';
import {mkdirSync, existsSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

export const BASE = process.env.PORTAL_URL;
export const FIXTURE = JSON.parse(process.env.PORTAL_FIXTURE || '{}');
export const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15_000;

export async function launch() {
  if (!BASE) throw new Error('PORTAL_URL is not set (run through tests/portal/test_portal.py)');
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: apt-get install -y chromium (make test does)`);
  mkdirSync(ARTIFACTS, {recursive: true});
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A fresh context (own sessionStorage) whose page fails the scenario on any script error or CSP violation. */
export async function newPage(browser, {phone = false, lang = 'zh-TW'} = {}) {
  const context = await browser.newContext(phone
    ? {viewport: {width: 390, height: 844}, deviceScaleFactor: 2, isMobile: true, hasTouch: true}
    : {viewport: {width: 1280, height: 900}});
  // The language a scenario starts in; a switch made in the page then holds across reloads.
  // (init scripts also run in frames without storage, such as the PDF viewer's: those are left alone)
  await context.addInitScript(language => {
    try {
      if (window.localStorage && !localStorage.getItem('footprint.lang')) localStorage.setItem('footprint.lang', language);
    } catch { /* an opaque origin */ }
  }, lang);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.problems = [];
  page.on('pageerror', error => page.problems.push(`page error: ${error.message}`));
  page.on('console', message => {
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of (4\d\d)/.test(message.text())) {
      page.problems.push(`console error: ${message.text()}`);
    }
  });
  return page;
}

export async function signIn(page, {school, username, password}) {
  await page.goto(`${BASE}/#/login`);
  await page.getByLabel(/學校代碼|School code/).fill(school);
  await page.getByLabel(/^(帳號|Username)$/).fill(username);
  await page.getByLabel(/^(密碼|Password)$/).fill(password);
  await page.getByRole('button', {name: /^(登入|Sign in)$/}).click();
}

/** Screenshot a main page, and hold it to the basics of accessibility: every control and image has a name. */
export async function shot(page, name) {
  await page.screenshot({path: join(ARTIFACTS, `${name}.png`), fullPage: true});
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button, img, iframe')]
    .filter(el => el.getClientRects().length || el.classList.contains('visually-hidden'))
    .filter(el => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
                    el.getAttribute('alt') || el.getAttribute('title') || (el.tagName === 'BUTTON' && el.textContent.trim())))
    .map(el => el.outerHTML.slice(0, 160)));
  if (unnamed.length) page.problems.push(`${name}: controls without an accessible name:\n${unnamed.join('\n')}`);
  const lang = await page.evaluate(() => document.documentElement.lang);
  if (!['zh-TW', 'en'].includes(lang)) page.problems.push(`${name}: the document's language is ${lang}`);
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export function step(name) { console.log(`ok ${name}`); }

/** Run a scenario: close the browser whatever happens; exit 1 with the error (and a screenshot) on failure. */
export async function scenario(name, body) {
  const browser = await launch();
  const pages = [];
  try {
    await body({browser, open: async options => { const page = await newPage(browser, options); pages.push(page); return page; }});
    const problems = pages.flatMap(page => page.problems);
    if (problems.length) throw new Error(`the page reported problems:\n${problems.join('\n')}`);
    console.log(`scenario ${name} passed`);
  } catch (error) {
    for (const [index, page] of pages.entries()) {
      try { await shot(page, `FAILED-${name}-${index}`); } catch { /* page already gone */ }
    }
    console.error(`scenario ${name} FAILED: ${error.stack || error}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

/** Call the API directly (to prepare or to check what the UI did). */
export async function apiCall(path, {token, method = 'GET', json} = {}) {
  const response = await fetch(`${BASE}${path}`, {method, headers: {
    ...(token ? {Authorization: `Bearer ${token}`} : {}), ...(json ? {'Content-Type': 'application/json'} : {})},
    body: json ? JSON.stringify(json) : undefined});
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(body)}`);
  return body;
}

export async function tokenOf({school, username, password}) {
  return (await apiCall('/api/v1/auth/login', {method: 'POST', json: {school, username, password}})).access_token;
}

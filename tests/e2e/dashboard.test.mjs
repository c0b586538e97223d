// dashboard.test.mjs: the staff dashboard (web/dashboard/, served by fitsyncd
// at /dashboard/) in a real browser against a real fitsyncd and Redis.
//
// Debian's Chromium (/usr/bin/chromium, installed by tools/bootstrap.sh;
// FITSYNC_CHROMIUM overrides) is driven headless by playwright-core from npm;
// no browser is downloaded. The test:
//   1. checks that the page, its script and Chart.js are served (under the
//      server's Content-Security-Policy);
//   2. enters a token with the wrong signature, then a member token: both are
//      refused with a clear message, and neither is retried;
//   3. enters a staff token: the page goes live, shows the week (suppressed
//      "<5" on a fresh server), draws its charts with Chart.js, keeps the
//      token over a reload, and its week picker moves between weeks;
//   4. uploads activities for 7 members from the test (6 in Wan Chai aged
//      18-34 who meet the aerobic target, 1 in Sha Tin aged 65+ who does not)
//      and waits for the page's numbers to change: 7 active, 6 meeting the
//      target, Wan Chai 6, Sha Tin and 65+ suppressed, and a host's relay with
//      6 teams in the events table; saves screenshots at
//      laptop and phone size (tests/artifacts/dashboard.png,
//      dashboard-phone.png) and checks the phone layout does not overflow;
//   5. stops the server: the page says it is reconnecting (screenshot
//      dashboard-offline.png), keeps the figures; starts a server on the same
//      port (fresh data): the page is live again by itself with its figures;
//   6. signs out; and no Content-Security-Policy violation was reported.
// Step 4 also downloads the week as CSV (GET /api/v1/stats.csv with the token).
//
// The expected figures are chosen so that any reading of the suppression
// rule (a segment with fewer than k=5 active members, or any count below k)
// gives the same page: every number asserted is at least 5.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/dashboard.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  SOURCE_DIR,
  startServer,
  mintToken,
  httpGet,
  waitFor,
  sleep,
  tempDir,
  MIN,
  localDate,
  addDays,
  mondayOf,
  isoWeek,
  at,
} from './lib.mjs';

const CHROMIUM = process.env.FITSYNC_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const ARTIFACTS = path.join(SOURCE_DIR, 'tests', 'artifacts');
const LAPTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };

const OFF = 8 * 60; // config/fitsync.json "timezone": "+08:00"

/* ------------------------------------------------------------------ */
/* shared state of the sequential tests below                          */

let server; // the fitsyncd under test (replaced by another on the same port in step 5)
let profileDir;
let ctx; // the browser context (a fresh --user-data-dir)
let page;
let secret;
const sockets = []; // every WebSocket the page opened
const cspViolations = [];
const pageErrors = [];

/*
 * The steps build on each other (one page, one server): after a failed step
 * the later ones are skipped rather than each timing out on a page that is
 * not there.
 */
let failedStep = null;
function step(name, fn) {
  it(name, async (t) => {
    if (failedStep) {
      t.skip(`skipped: the step "${failedStep}" failed`);
      return;
    }
    try {
      await fn(t);
    } catch (e) {
      failedStep = name;
      // what the page looked like when the step failed
      await page?.screenshot({ path: path.join(ARTIFACTS, 'dashboard-failed.png'), fullPage: true }).catch(() => {});
      throw e;
    }
  });
}

const sel = (id) => `[data-testid="${id}"]`;
const text = async (id) => ((await page.textContent(sel(id))) ?? '').trim();

/* Waits until the element's text satisfies want (a string: equal; a RegExp: matches). */
async function waitText(id, want, timeout = 15000) {
  let last;
  const ok = (t) => (want instanceof RegExp ? want.test(t) : t === want);
  try {
    await waitFor(
      async () => {
        last = await text(id);
        return ok(last);
      },
      { timeout, interval: 100, what: `${id} to read ${want}` }
    );
  } catch {
    const status = await text('status').catch(() => '?');
    assert.fail(`[data-testid=${id}] reads ${JSON.stringify(last)}, expected ${want} (waited ${timeout} ms; status line: ${JSON.stringify(status)})`);
  }
  return last;
}

async function submitToken(token) {
  await page.fill(sel('token-input'), token);
  await page.click(sel('token-submit'));
}

/* A member on their own connection: sets the profile, uploads one session, disconnects. */
async function memberUploads(sub, profile, activity) {
  const c = await server.login(sub, 'phone');
  try {
    const p = await c.request({ type: 'profile.set', profile });
    assert.equal(p.type, 'profile.set', JSON.stringify(p));
    const r = await c.request({ type: 'activity.upload', activities: [activity] });
    assert.equal(r.type, 'activity.upload', JSON.stringify(r));
    assert.equal(r.accepted, 1, JSON.stringify(r));
  } finally {
    await c.closeAndWait();
  }
}

async function screenshot(name, viewport) {
  await page.setViewportSize(viewport);
  // Chart.js resizes on a later frame, then animates 300 ms
  await waitFor(
    () =>
      page.evaluate(() =>
        [...document.querySelectorAll('.chart-box canvas')].every(
          (c) => Math.abs(c.getBoundingClientRect().width - c.parentElement.clientWidth) <= 1
        )
      ),
    { timeout: 5000, what: 'the charts to fit their boxes' }
  ).catch(() => {});
  await sleep(500);
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(fs.statSync(file).size > 10000, `${file} looks empty`);
  return file;
}

/* ------------------------------------------------------------------ */

describe('staff dashboard in headless Chromium', () => {
  before(async () => {
    assert.ok(
      fs.existsSync(CHROMIUM),
      `${CHROMIUM} is missing: install Debian's chromium (tools/bootstrap.sh does), or set FITSYNC_CHROMIUM`
    );
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    secret = crypto.randomBytes(24).toString('hex');
    server = await startServer({ secret });
    profileDir = tempDir('fitsync-chromium-');
    ctx = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: LAPTOP,
      timeout: 60000,
    });
    page = ctx.pages()[0] || (await ctx.newPage());
    page.setDefaultTimeout(15000);
    page.on('websocket', (ws) => sockets.push(ws.url()));
    page.on('console', (m) => {
      if (/Content[- ]Security[- ]Policy|Refused to (load|execute|apply)/i.test(m.text())) cspViolations.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  after(async () => {
    await ctx?.close().catch(() => {});
    await server?.stop().catch(() => {});
    if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
  });

  step('serves the page, its script and Chart.js at /dashboard/', async () => {
    const html = await httpGet(server.port, '/dashboard/');
    assert.equal(html.status, 200, `GET /dashboard/ answered ${html.status}: ${html.text.slice(0, 200)}`);
    assert.match(String(html.headers['content-type']), /^text\/html/);
    assert.match(html.text, /data-testid="token-input"/, 'GET /dashboard/ is not web/dashboard/index.html');
    const csp = String(html.headers['content-security-policy'] || '');
    assert.match(csp, /script-src 'self'/, `no strict Content-Security-Policy on /dashboard/: ${JSON.stringify(csp)}`);
    for (const f of ['app.js', 'style.css']) {
      const r = await httpGet(server.port, `/dashboard/${f}`);
      assert.equal(r.status, 200, `GET /dashboard/${f} answered ${r.status}`);
      assert.equal(r.text, fs.readFileSync(path.join(SOURCE_DIR, 'web/dashboard', f), 'utf8'));
    }
    const vendor = await httpGet(server.port, '/dashboard/vendor/chart.umd.js', 10000);
    assert.equal(vendor.status, 200, `GET /dashboard/vendor/chart.umd.js answered ${vendor.status} (is web/node_modules installed?)`);
    const local = fs.readFileSync(path.join(SOURCE_DIR, 'web/node_modules/chart.js/dist/chart.umd.js'), 'utf8');
    assert.equal(vendor.text.length, local.length, 'the served chart.umd.js is not web/node_modules/chart.js/dist/chart.umd.js');
  });

  step('refuses a wrong token and a member token with a clear message, and does not retry them', async () => {
    await page.goto(`http://127.0.0.1:${server.port}/dashboard/`);
    await page.waitForSelector(sel('token-input'));
    assert.equal(await page.getAttribute(sel('status'), 'data-state'), 'signed-out');

    // signed with another secret: invalid_token at hello, then a 1008 close
    await submitToken(mintToken('not-the-servers-secret', { sub: 'staff-1', role: 'staff' }));
    await waitText('status', /^token refused: /);
    assert.equal(await page.getAttribute(sel('status'), 'data-state'), 'refused');
    assert.ok(await page.isVisible(sel('error')), 'the refusal is shown next to the token form');
    assert.match(await text('error'), /^token refused: \S/);
    assert.ok(await page.isVisible(sel('token-input')), 'the token form stays open');
    const opened = sockets.length;
    assert.ok(opened >= 1, 'the page opened a WebSocket');
    await sleep(2500); // past the first backoff steps (1 s, 2 s)
    assert.equal(sockets.length, opened, 'a refused token was retried');
    assert.match(await text('status'), /^token refused: /);

    // a valid member token: welcome, then forbidden on stats.subscribe
    await submitToken(mintToken(secret, { sub: 'alice', role: 'member' }));
    await waitFor(async () => sockets.length > opened, { timeout: 5000, what: 'a new WebSocket for the new token' });
    await waitText('status', /^token refused: /);
    assert.equal(await page.getAttribute(sel('status'), 'data-state'), 'refused');
    assert.ok(await page.isHidden(sel('dashboard')), 'no figures are shown to a non-staff token');
    const opened2 = sockets.length;
    await sleep(2500);
    assert.equal(sockets.length, opened2, 'a forbidden token was retried');
    assert.equal(await page.evaluate(() => Object.keys(sessionStorage).filter((k) => /token/.test(k)).length), 0,
      'a refused token is not kept');
  });

  step('goes live with a staff token: headline numbers, Chart.js charts, the token kept, the week picker', async () => {
    await submitToken(mintToken(secret, { sub: 'staff-1', role: 'staff' }));
    await waitText('status', 'live');
    assert.ok(await page.isHidden(sel('signin')), 'the token form is closed once the token is accepted');
    assert.ok(await page.isVisible(sel('sign-out')));
    assert.ok(await page.isHidden(sel('error')));

    // a fresh server: nobody is active yet, and fewer than k is never a number
    assert.equal(await text('active-members'), '<5');
    assert.equal(await text('aerobic-met'), '<5');

    const current = isoWeek(localDate(Date.now(), OFF));
    assert.ok((await text('week-label')).startsWith(current), `week label ${await text('week-label')}, expected ${current}`);
    assert.equal(await page.inputValue(sel('week-input')), current);

    const charts = await page.evaluate(() => {
      if (typeof window.Chart !== 'function') return 'window.Chart is not loaded';
      const out = {};
      for (const id of ['chart-district', 'chart-age', 'chart-trend', 'chart-uploads']) {
        const c = window.Chart.getChart(document.querySelector(`[data-testid="${id}"]`));
        out[id] = c ? { type: c.config.type, labels: c.data.labels.length } : null;
      }
      return out;
    });
    assert.deepEqual(charts, {
      'chart-district': { type: 'bar', labels: 18 },
      'chart-age': { type: 'bar', labels: 5 },
      'chart-trend': { type: 'line', labels: 12 },
      'chart-uploads': { type: 'bar', labels: 60 },
    });

    // the token is kept in this tab: a reload goes straight back to live
    const before = sockets.length;
    await page.reload();
    await waitText('status', 'live');
    assert.ok(await page.isHidden(sel('signin')), 'a reload asks for the token again');
    assert.ok(sockets.length > before);

    // the week picker: the week before, then back to this week
    const prev = isoWeek(addDays(mondayOf(localDate(Date.now(), OFF)), -7));
    await page.click(sel('week-prev'));
    await waitText('week-label', new RegExp(`^${prev} `));
    assert.equal(await page.inputValue(sel('week-input')), prev);
    assert.ok(await page.isEnabled(sel('week-current')));
    await page.click(sel('week-current'));
    await waitText('week-label', new RegExp(`^${current} `));
    assert.ok(await page.isDisabled(sel('week-next')), 'no weeks after the current one');
  });

  step('shows the numbers change as members upload, suppressing small districts; screenshots at laptop and phone size', async () => {
    // Place every session inside one week, ended before now. Early on a
    // Monday (programme time) the current week is too young for an 80-minute
    // run, so the sessions go into last Sunday and the page is moved there.
    const now = Date.now();
    const today = localDate(now, OFF);
    const weekStart = at(mondayOf(today), 0, 0, OFF);
    let week = isoWeek(today);
    let runStart = now - 95 * MIN;
    let walkStart = now - 40 * MIN;
    if (runStart < weekStart) {
      const sunday = addDays(mondayOf(today), -1);
      week = isoWeek(sunday);
      runStart = at(sunday, 20, 0, OFF);
      walkStart = at(sunday, 22, 0, OFF);
      await page.click(sel('week-prev'));
      await waitText('week-label', new RegExp(`^${week} `));
    }
    const rfc = (ms) => new Date(ms + OFF * MIN).toISOString().slice(0, 19) + '+08:00';
    const year = Number(week.slice(0, 4));
    const activeBefore = await text('active-members');
    assert.equal(activeBefore, '<5');

    // 6 members in Wan Chai, aged 30: 80 min running (vigorous, MET 8) = 160 equivalent minutes each
    const uploads = [];
    for (let i = 0; i < 6; i++) {
      uploads.push(
        memberUploads(
          `dash-wc-${i}`,
          { district: 'wan-chai', birth_year: year - 30, gender: i % 2 ? 'male' : 'female' },
          { client_id: `run-${i}`, type: 'running', start: rfc(runStart), duration_s: 80 * 60 }
        )
      );
    }
    // 1 member in Sha Tin, aged 70: 30 min walking (moderate), below the target
    uploads.push(
      memberUploads(
        'dash-st-0',
        { district: 'sha-tin', birth_year: year - 70, gender: 'female' },
        { client_id: 'walk-0', type: 'walking', start: rfc(walkStart), duration_s: 30 * 60 }
      )
    );
    // an event host's timed relay with 6 teams: the events table
    uploads.push(
      (async () => {
        const host = await server.login('dash-host', 'laptop', { role: 'host', event: 'dash-relay' });
        try {
          const ev = await host.request({
            type: 'event.create',
            event: 'dash-relay',
            name: 'Harbour Relay (test)',
            kind: 'timed_relay',
            starts_at: new Date(now + 86400000).toISOString(),
            duration_s: 7200,
            lap_m: 400,
            categories: [{ id: 'open', name: 'Open', group: 'adult' }],
          });
          assert.equal(ev.type, 'event.create', JSON.stringify(ev));
          const csv = 'bib,name,category\n' + [1, 2, 3, 4, 5, 6].map((b) => `${b},Team ${b},open`).join('\n') + '\n';
          const imp = await host.request({ type: 'team.import', event: 'dash-relay', csv });
          assert.equal(imp.accepted, 6, JSON.stringify(imp));
        } finally {
          await host.closeAndWait();
        }
      })()
    );
    await Promise.all(uploads);

    // pushed to the page (at most once a second), no reload
    await waitText('active-members', '7', 20000);
    await waitText('aerobic-met', '6');
    assert.match(await text('attainment'), /^86% /); // 6 of 7
    await waitText('activities', '7');
    assert.equal(await text('total-activities'), '7');
    assert.equal(await text('district-wan-chai-active'), '6');
    assert.equal(await text('district-wan-chai-met'), '6');
    assert.equal(await text('district-wan-chai-share'), '100%');
    assert.equal(await text('district-sha-tin-active'), '<5');
    assert.equal(await text('district-sha-tin-met'), '<5');
    assert.equal(await text('district-sha-tin-share'), 'suppressed');
    assert.equal(await text('district-eastern-active'), '<5');
    assert.equal(await text('age-18-34-active'), '6');
    assert.equal(await text('age-65+-active'), '<5');
    await waitText('event-dash-relay-teams', '6');
    assert.equal(await text('event-dash-relay-participants'), '6');
    assert.match(await text('event-dash-relay'), /^Harbour Relay \(test\)\s*timed relay\s*scheduled/);
    const hour = await text('uploads-last-hour');
    assert.ok(Number(/^(\d+)/.exec(hour)?.[1]) >= 7, `uploads in the last hour: ${hour}`);

    // the district chart: Wan Chai at 100%, Sha Tin left out and labelled suppressed
    const bars = await page.evaluate(() => {
      const c = window.Chart.getChart(document.querySelector('[data-testid="chart-district"]'));
      return Object.fromEntries(c.data.labels.map((l, i) => [l, c.data.datasets[0].data[i]]));
    });
    assert.equal(bars['Wan Chai'], 100);
    assert.equal(bars['Sha Tin (<5)'], null);
    // the trend's last week is the week shown, with 7 active members
    const trend = await page.evaluate(() => {
      const c = window.Chart.getChart(document.querySelector('[data-testid="chart-trend"]'));
      return { last: c.data.labels.at(-1), active: c.data.datasets[0].data.at(-1), met: c.data.datasets[1].data.at(-1) };
    });
    assert.deepEqual(trend, { last: week.slice(5), active: 7, met: 6 });

    // no figure on the page shows a count below k as a number
    const small = await page.evaluate(() =>
      [...document.querySelectorAll('[data-testid$="-active"], [data-testid$="-met"]')]
        .map((e) => [e.dataset.testid, e.textContent.trim()])
        .filter(([, t]) => /^\d+$/.test(t) && Number(t) > 0 && Number(t) < 5)
    );
    assert.deepEqual(small, [], 'counts below k shown as numbers');

    // the week as CSV, through the staff API, suppressed as on screen
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(sel('download-csv'))]);
    assert.equal(download.suggestedFilename(), `fitsync-stats-${week}.csv`);
    const csv = fs.readFileSync(await download.path(), 'utf8');
    assert.match(csv, /^week,segment,value,active_members,aerobic_met/);
    assert.match(csv, new RegExp(`^${week},all,all,7,6,`, 'm'));
    assert.match(csv, new RegExp(`^${week},district,sha-tin,<5,<5,`, 'm'));

    await page.click(sel('district-figures')); // open the table under the chart for the screenshot
    await screenshot('dashboard.png', LAPTOP);
    await screenshot('dashboard-phone.png', PHONE);
    const measure = () => page.evaluate((w) => ({
      width: document.documentElement.scrollWidth,
      wide: [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > w + 1)
        .slice(0, 5)
        .map((e) => `${e.tagName.toLowerCase()}${e.dataset.testid ? `[${e.dataset.testid}]` : ''}.${e.className}`),
    }), PHONE.width);
    const { width, wide } = await measure();
    assert.ok(width <= PHONE.width, `the page is ${width} px wide at ${PHONE.width} px, so it scrolls sideways on a phone: ${wide.join(', ')}`);
    await page.setViewportSize(LAPTOP);
  });

  step('says so when the server goes away, keeps the figures, and reconnects by itself', async () => {
    const port = server.port;
    await server.stop();
    await waitText('status', /reconnecting in \d+ s|unreachable/);
    assert.ok(['reconnecting', 'unreachable'].includes(await page.getAttribute(sel('status'), 'data-state')));
    assert.equal(await text('active-members'), '7', 'the last figures stay on screen');
    // a reconnect attempt fails while the server is down: unreachable, with a longer wait
    await waitText('status', /^server unreachable · reconnecting in \d+ s$/, 10000);
    await screenshot('dashboard-offline.png', LAPTOP);

    // A server on the same port with the same secret but empty data: the page
    // comes back by itself and shows what that server has (nobody active).
    // (Not the same data: keeping the Redis data across a restart is the
    // server's business, and its own tests hold it.)
    server = await startServer({ secret, port });
    await waitText('status', 'live', 40000); // backoff is at most 8 s by now
    await waitText('active-members', '<5');
    assert.equal(await text('district-wan-chai-active'), '<5');
    assert.equal(await text('total-activities'), '0');
  });

  step('signs out, and reported no Content-Security-Policy violation or script error', async () => {
    await page.click(sel('sign-out'));
    await page.waitForSelector(sel('token-input'), { state: 'visible' });
    assert.equal(await page.getAttribute(sel('status'), 'data-state'), 'signed-out');
    assert.ok(await page.isHidden(sel('dashboard')));
    assert.equal(await page.evaluate(() => Object.keys(sessionStorage).filter((k) => /token/.test(k)).length), 0);
    assert.deepEqual(cspViolations, [], 'Content-Security-Policy violations');
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  });
});

// protocol.test.mjs: fitsync.v1 end to end, over real WebSockets, against a
// real fitsyncd with its embedded redis-server (docs/PROTOCOL.md is the spec
// these tests hold the server to).
//
// Three servers are started, each on a free port in a fresh temporary dir:
//   main    default limits; most tests, one user per test so that tests do
//           not see each other's data or pushes;
//   small   FITSYNC_MAX_BATCH=5, FITSYNC_MAX_MESSAGE_BYTES=4096: the limits;
//   outage  its token secret in DATA/token.secret (no FITSYNC_TOKEN_SECRET):
//           the Redis outage and, last, the graceful stop.
//
// Expected figures are computed here, independently of the C and Lua code:
// a minute-by-minute model of each local day (union of sessions, the highest
// intensity winning a minute, summaries combined per intensity as the
// larger), local dates from each timestamp's own offset, ISO weeks from the
// calendar. Dates are chosen relative to now (the acceptance window is 8
// weeks), mostly 2 to 5 weeks back so that nothing is in the future.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/protocol.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startServer,
  connect,
  mintToken,
  mintTokenWithTool,
  tokenClaims,
  httpGet,
  sleep,
  waitFor,
  withTimeout,
  dayModel,
  embeddedOnly,
} from './lib.mjs';

/* ------------------------------------------------------------------ */
/* calendar and the reference model                                    */

const MIN = 60000;
const DAY = 86400000;
const PROGRAMME_OFFSET = 8 * 60; // config/fitsync.json "timezone": "+08:00"
const pad = (n, w = 2) => String(n).padStart(w, '0');

function fmtOffset(off) {
  const a = Math.abs(off);
  return `${off < 0 ? '-' : '+'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}
/* An instant written in a given offset, e.g. 2026-03-02T07:30:00+08:00. */
function rfc3339(ms, off) {
  return new Date(ms + off * MIN).toISOString().slice(0, 19) + fmtOffset(off);
}
function localDate(ms, off) {
  return new Date(ms + off * MIN).toISOString().slice(0, 10);
}
function dateMs(date) {
  const [y, m, d] = date.split('-').map(Number);
  return Date.UTC(y, m - 1, d);
}
const addDays = (date, n) => new Date(dateMs(date) + n * DAY).toISOString().slice(0, 10);
/* UTC instant of local time hh:mm on date at offset off. */
const at = (date, hh, mm, off) => dateMs(date) + (hh * 60 + mm - off) * MIN;
const isoWeekday = (date) => ((new Date(dateMs(date)).getUTCDay() + 6) % 7) + 1; // 1 = Monday
const mondayOf = (date) => addDays(date, 1 - isoWeekday(date));
/* ISO 8601 week name: the week belongs to the year of its Thursday. */
function isoWeek(date) {
  const thu = addDays(date, 4 - isoWeekday(date));
  const year = Number(thu.slice(0, 4));
  const week = 1 + Math.floor((dateMs(thu) - Date.UTC(year, 0, 1)) / (7 * DAY));
  return `${year}-W${pad(week)}`;
}
const currentWeek = () => isoWeek(localDate(Date.now(), PROGRAMME_OFFSET));
/* The Monday (a local date) of the ISO week k weeks before the current one. */
const mondayWeeksAgo = (k) => addDays(mondayOf(localDate(Date.now(), PROGRAMME_OFFSET)), -7 * k);

const LEVEL = { light: 1, moderate: 2, vigorous: 3 };

/*
 * The day rule as docs/PROTOCOL.md states it, minute by minute (all test
 * sessions start and end on whole minutes): a minute counts once, at the
 * highest intensity of the sessions covering it, on the local date of that
 * minute in the session's own offset; then each intensity of a day is the
 * larger of the sessions' figure and every summary's figure for that day.
 * sessions: [{start (UTC ms), end, off (minutes), level}]
 * summaries: [{date, mo, vi, li}]  ->  Map date -> {mo, vi, li}
 */
const model = dayModel; // lib.mjs: the day rule, computed independently of the server

/* A week's totals from the model, in the wire's field names. */
function weekTotals(days, week) {
  const t = { moderate_min: 0, vigorous_min: 0, light_min: 0 };
  for (const [d, v] of days) {
    if (isoWeek(d) !== week) continue;
    t.moderate_min += v.mo;
    t.vigorous_min += v.vi;
    t.light_min += v.li;
  }
  t.mvpa_min = t.moderate_min + t.vigorous_min;
  t.equivalent_min = t.moderate_min + 2 * t.vigorous_min;
  return t;
}

function assertWeek(wk, days, week) {
  assert.equal(wk.week, week);
  const want = weekTotals(days, week);
  const got = {};
  for (const k of Object.keys(want)) got[k] = wk[k];
  assert.deepEqual(got, want, `totals of ${week}`);
  assert.equal(wk.days.length, 7);
  assert.equal(wk.days[0].date, mondayOf(wk.days[0].date), 'days start on a Monday');
  for (const day of wk.days) {
    assert.equal(isoWeek(day.date), week);
    const m = days.get(day.date) || { mo: 0, vi: 0, li: 0 };
    assert.deepEqual(
      [day.moderate_min, day.vigorous_min, day.light_min, day.mvpa_min, day.equivalent_min],
      [m.mo, m.vi, m.li, m.mo + m.vi, m.mo + 2 * m.vi],
      `day ${day.date}`
    );
  }
}

/* A session item and its model twin. type decides the intensity (config/met.json). */
const TYPE_LEVEL = { running: 3, walking: 2, yoga: 1 }; // MET 8.0, 4.3, 2.5
function session(clientId, type, start, minutes, off, extra = {}) {
  const item = { client_id: clientId, type, start: rfc3339(start, off), duration_s: minutes * 60, ...extra };
  const level = extra.intensity ? LEVEL[extra.intensity] : TYPE_LEVEL[type];
  return { item, model: { start, end: start + minutes * MIN, off, level } };
}

let userSeq = 0;
const newUser = (name) => `${name}-${process.pid}-${++userSeq}`;

const upload = (c, activities, timeout) => c.request({ type: 'activity.upload', activities }, timeout);
const summaries = (c, items) => c.request({ type: 'summary.upload', summaries: items });
const weekGet = async (c, week) => {
  const r = await c.request(week === undefined ? { type: 'week.get' } : { type: 'week.get', week });
  assert.equal(r.type, 'week.get', JSON.stringify(r));
  return r.week;
};

function assertError(reply, code, field, re) {
  assert.equal(reply.type, 'error', JSON.stringify(reply));
  assert.equal(reply.code, code, JSON.stringify(reply));
  if (field === undefined) assert.equal(reply.field, undefined, JSON.stringify(reply));
  else assert.equal(reply.field, field, JSON.stringify(reply));
  assert.equal(typeof reply.message, 'string');
  assert.ok(reply.message.length > 0);
  if (re !== undefined) assert.equal(reply.re, re);
}

/* Waits until the connection has closed, bounded. */
const closedWithin = (c, ms = 3000) => withTimeout(c.closed, ms, 'the server to close the connection');

/* ------------------------------------------------------------------ */

describe('fitsync.v1', () => {
  let srv; // main
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  describe('HTTP', () => {
    it('GET /healthz answers 200 with Redis up', async () => {
      const r = await httpGet(srv.port, '/healthz');
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.deepEqual({ status: r.body.status, redis: r.body.redis, protocol: r.body.protocol },
        { status: 'ok', redis: 'up', protocol: 'fitsync.v1' });
      assert.equal(typeof r.body.version, 'string');
    });
    it('any other path is 404 with a JSON body', async () => {
      const r = await httpGet(srv.port, '/nope');
      assert.equal(r.status, 404);
      assert.equal(r.body.error, 'not_found');
    });
  });

  describe('hello', () => {
    it('a token from build/fitsync-token and one from node crypto agree, and both are accepted', async () => {
      const user = newUser('tok');
      const tool = mintTokenWithTool({ sub: user, ttl: 600, secret: srv.secret });
      const claims = tokenClaims(tool);
      assert.deepEqual(Object.keys(claims).sort(), ['exp', 'role', 'sub']);
      assert.equal(claims.sub, user);
      assert.equal(claims.role, 'member');
      assert.ok(Math.abs(claims.exp - (Date.now() / 1000 + 600)) < 5);
      // The same header and claims (keys sorted, as the C code writes them) give the same bytes.
      const mine = mintToken(srv.secret, { exp: claims.exp, role: 'member', sub: user });
      assert.equal(mine, tool);
      const [h, p, sig] = tool.split('.');
      const mac = crypto.createHmac('sha256', srv.secret).update(`${h}.${p}`).digest('base64url');
      assert.equal(sig, mac);
      for (const token of [tool, srv.token(user)]) {
        const c = await connect(srv.url);
        const w = await c.request({ type: 'hello', token, device_id: 'phone-1' });
        assert.equal(w.type, 'welcome', JSON.stringify(w));
        assert.equal(w.user, user);
        await c.closeAndWait();
      }
    });

    it('a good token gets welcome with user, role, device, current week and limits', async () => {
      const user = newUser('alice');
      const c = await connect(srv.url);
      const before = currentWeek();
      const w = await c.request({ type: 'hello', id: 'h1', token: srv.token(user), device_id: 'pixel-7' });
      const after_ = currentWeek();
      assert.equal(w.type, 'welcome');
      assert.equal(w.re, 'h1');
      assert.equal(w.user, user);
      assert.equal(w.role, 'member');
      assert.equal(w.device_id, 'pixel-7');
      assert.equal(w.protocol, 'fitsync.v1');
      assert.ok([before, after_].includes(w.week), `week ${w.week}, expected ${before}`);
      assert.match(w.server_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$/);
      assert.ok(Math.abs(Date.parse(w.server_time) - Date.now()) < 5000);
      assert.deepEqual(w.limits, {
        max_batch: 500, max_message_bytes: 1048576, max_age_weeks: 8, future_tolerance_s: 600,
        messages_per_s: 20, burst: 60, sync_window_days: 56,
      });
      assert.equal(w.cursor, '0-0', 'a new user has an empty change log');
      await c.closeAndWait();
    });

    const refusals = [
      ['a missing token', () => ({ device_id: 'd1' }), 'missing_field', 'token'],
      ['a token with a bad signature', () => {
        const t = srv.token('mallory');
        const forged = mintToken('not-the-secret-0123456789', tokenClaims(t));
        return { token: forged, device_id: 'd1' };
      }, 'invalid_token', 'token'],
      ['an expired token', () => ({ token: srv.token('bob', { exp: Math.floor(Date.now() / 1000) - 5 }), device_id: 'd1' }),
        'token_expired', 'token'],
      ['alg "none"', () => ({ token: mintToken(srv.secret, { sub: 'mallory' }, { alg: 'none', typ: 'JWT' }), device_id: 'd1' }),
        'invalid_token', 'token'],
      ['alg "none" carrying a valid HS256 signature', () => {
        const good = srv.token('mallory').split('.');
        const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
        return { token: `${none}.${good[1]}.${good[2]}`, device_id: 'd1' };
      }, 'invalid_token', 'token'],
      ['an unknown role', () => ({ token: srv.token('bob', { role: 'admin' }), device_id: 'd1' }), 'invalid_token', 'token'],
      ['a missing device_id', () => ({ token: srv.token('bob') }), 'missing_field', 'device_id'],
    ];
    for (const [what, body, code, field] of refusals) {
      it(`${what}: ${code}, then the connection is closed`, async () => {
        const c = await connect(srv.url);
        const r = await c.request({ type: 'hello', ...body() });
        assertError(r, code, field);
        await closedWithin(c);
      });
    }

    it('a refused hello closes with 1008 (policy violation) and a reason', async () => {
      const c = await connect(srv.url);
      await c.send({ type: 'hello', token: srv.token('bob', { exp: Math.floor(Date.now() / 1000) - 5 }), device_id: 'd1' });
      const info = await closedWithin(c);
      assert.equal(info.code, 1008, `close code ${info.code} (1006 = closed without a close frame)`);
      assert.equal(info.reason, 'token expired');
    });

    it('anything before hello is unauthenticated, and the connection stays open', async () => {
      const user = newUser('early');
      const c = await connect(srv.url);
      for (const msg of [{ type: 'week.get' }, { type: 'activity.upload', activities: [] }, { type: 'profile.set', profile: {} }]) {
        assertError(await c.request(msg), 'unauthenticated', undefined);
      }
      assert.ok(c.isOpen);
      const w = await c.request({ type: 'hello', token: srv.token(user), device_id: 'd1' });
      assert.equal(w.type, 'welcome');
      await c.closeAndWait();
    });

    it('a second hello is already_authenticated, and the session is unchanged', async () => {
      const user = newUser('twice');
      const c = await srv.login(user, 'd1');
      assertError(await c.request({ type: 'hello', token: srv.token(newUser('other')), device_id: 'd2' }),
        'already_authenticated', undefined);
      assert.ok(c.isOpen);
      assert.equal((await weekGet(c)).week.length, 8);
      await c.closeAndWait();
    });

    it('a connection without the subprotocol fitsync.v1 is refused', async () => {
      await assert.rejects(connect(srv.url, { protocols: [] }));
      await assert.rejects(connect(srv.url, { protocols: ['fitsync.v2'] }));
      // Offering several, one of them fitsync.v1, is fine.
      const c = await connect(srv.url, { protocols: ['fitsync.v2', 'fitsync.v1'] });
      assert.equal(c.ws.protocol, 'fitsync.v1');
      await c.closeAndWait();
    });

    it('a staff token may say hello but not log activity or read a member week (forbidden)', async () => {
      const c = await srv.login(newUser('staff'), 'desk', { role: 'staff' });
      assert.equal(c.welcome.role, 'staff');
      const s = session('s-1', 'running', at(mondayWeeksAgo(2), 7, 0, 480), 10, 480);
      assertError(await upload(c, [s.item]), 'forbidden', undefined);
      assertError(await c.request({ type: 'week.get' }), 'forbidden', undefined);
      assertError(await c.request({ type: 'profile.set', profile: {} }), 'forbidden', undefined);
      assert.ok(c.isOpen);
      await c.closeAndWait();
    });
  });

  describe('upload', () => {
    it('a session is created and the week figures follow', async () => {
      const user = newUser('up');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const run = session('run-1', 'running', at(mon, 7, 30, 480), 30, 480, { distance_m: 5000, steps: 5200 });
      const walk = session('walk-1', 'walking', at(addDays(mon, 2), 12, 0, 480), 40, 480);
      const r = await upload(c, [run.item, walk.item]);
      assert.equal(r.type, 'activity.upload');
      assert.deepEqual(r.results, [
        { index: 0, client_id: 'run-1', intensity: 'vigorous', status: 'created', rev: 1, weeks: [week] },
        { index: 1, client_id: 'walk-1', intensity: 'moderate', status: 'created', rev: 1, weeks: [week] },
      ]);
      assert.equal(r.accepted, 2);
      assert.equal(r.rejected, 0);
      const wk = await weekGet(c, week);
      assertWeek(wk, model([run.model, walk.model]), week);
      assert.equal(wk.equivalent_min, 40 + 2 * 30);
      assert.equal(wk.steps, 5200);
      assert.equal(wk.distance_m, 5000);
      assert.equal(wk.band, 'adults');
      assert.equal(wk.aerobic_met, false); // 100 of 150 equivalent minutes
      assert.equal(wk.active_days, 2);
      assert.equal(wk.vigorous_days, 1);
      await c.closeAndWait();
    });

    it('the same batch again is duplicate and the totals do not change', async () => {
      const user = newUser('dup');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const a = session('a-1', 'running', at(mon, 7, 0, 480), 25, 480);
      const b = session('a-2', 'walking', at(addDays(mon, 1), 18, 0, 480), 45, 480);
      const first = await upload(c, [a.item, b.item]);
      assert.deepEqual(first.results.map((x) => x.status), ['created', 'created']);
      const w1 = await weekGet(c, week);
      // Resent as a phone would after a lost reply; key order does not matter.
      const reordered = Object.fromEntries(Object.entries(b.item).reverse());
      const again = await upload(c, [a.item, reordered]);
      assert.deepEqual(again.results.map((x) => [x.status, x.client_id, x.weeks]),
        [['duplicate', 'a-1', []], ['duplicate', 'a-2', []]]);
      assert.equal(again.accepted, 2);
      assert.equal(again.rejected, 0);
      const w2 = await weekGet(c, week);
      assert.deepEqual(w2, w1);
      assertWeek(w2, model([a.model, b.model]), week);
      await c.closeAndWait();
    });

    it('the same client_id with different content is a conflict, and nothing changes', async () => {
      const user = newUser('conflict');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const a = session('x-1', 'walking', at(mon, 7, 0, 480), 30, 480);
      assert.equal((await upload(c, [a.item])).results[0].status, 'created');
      const changed = { ...a.item, duration_s: 3600 };
      const r = await upload(c, [changed]);
      assert.equal(r.accepted, 0);
      assert.equal(r.rejected, 1);
      const item = r.results[0];
      assert.equal(item.status, 'error');
      assert.equal(item.code, 'conflict');
      assert.equal(item.field, 'activities[0].client_id');
      assert.equal(item.index, 0);
      assert.equal(item.retryable, undefined);
      assertWeek(await weekGet(c, week), model([a.model]), week);
      await c.closeAndWait();
    });

    it('client ids belong to their user: users "k" and "k:a" do not see each other\'s data', async () => {
      // User ids and client ids may both contain ':', so a key layout that joins
      // them with ':' without escaping lets one user's client_id name another
      // user's keys (fit:{s0}:u:k:a:p is both k's activity "p" and k:a's profile).
      const k = newUser('k');
      const owner = await srv.login(k, 'phone');
      const other = await srv.login(`${k}:a`, 'phone');
      const mon = mondayWeeksAgo(2);
      const a = session('p', 'running', at(mon, 7, 0, 480), 10, 480);
      const b = session('a:run', 'running', at(mon, 8, 0, 480), 10, 480);
      assert.deepEqual((await upload(owner, [a.item, b.item])).results.map((x) => x.status), ['created', 'created']);
      const p = await other.request({ type: 'profile.set', profile: {} });
      assert.deepEqual(p.profile, {}, `${k}:a's profile holds ${k}'s activity: ${JSON.stringify(p.profile)}`);
      const mine = session('run', 'walking', at(mon, 9, 0, 480), 20, 480);
      const r = await upload(other, [mine.item]);
      assert.equal(r.results[0].status, 'created', JSON.stringify(r.results[0]));
      for (const c of [owner, other]) await c.closeAndWait();
    });

    it("the user's other device gets a progress push with the new week; another user's device does not", async () => {
      const user = newUser('multi');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const stranger = await srv.login(newUser('stranger'), 'phone');
      const mon = mondayWeeksAgo(3);
      const week = isoWeek(mon);
      const s = session('p-1', 'running', at(addDays(mon, 3), 6, 0, 480), 35, 480);
      const pushed = watch.nextPush('progress', 5000);
      const r = await upload(phone, [s.item]);
      assert.equal(r.results[0].status, 'created');
      const p = await pushed;
      assert.equal(p.type, 'progress');
      assert.equal(p.re, undefined);
      assert.equal(p.id, undefined);
      assertWeek(p.week, model([s.model]), week);
      assert.deepEqual(p.week, await weekGet(phone, week));
      assert.ok(await stranger.quiet((m) => m.type === 'progress', 1000), 'a stranger got a progress push');
      // A duplicate changes nothing, so nobody is told.
      await upload(phone, [s.item]);
      assert.ok(await watch.quiet((m) => m.type === 'progress', 700), 'a duplicate was pushed');
      for (const c of [phone, watch, stranger]) await c.closeAndWait();
    });
  });

  describe('scoring over the wire', () => {
    it('overlapping phone and watch sessions count once, and vigorous wins the overlap', async () => {
      const c = await srv.login(newUser('overlap'), 'phone');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      // Phone: brisk walk 07:00-07:40 (moderate). Watch: run 07:10-07:30 (vigorous), inside it.
      // Phone: yoga 18:00-18:30 (light) and watch: walk 18:15-18:45 (moderate): overlap moderate.
      const phoneWalk = session('ph-1', 'walking', at(mon, 7, 0, 480), 40, 480);
      const watchRun = session('wa-1', 'running', at(mon, 7, 10, 480), 20, 480);
      const phoneYoga = session('ph-2', 'yoga', at(mon, 18, 0, 480), 30, 480);
      const watchWalk = session('wa-2', 'walking', at(mon, 18, 15, 480), 30, 480);
      const all = [phoneWalk, watchRun, phoneYoga, watchWalk];
      const r = await upload(c, all.map((s) => s.item));
      assert.equal(r.accepted, 4);
      const wk = await weekGet(c, week);
      assertWeek(wk, model(all.map((s) => s.model)), week);
      // By hand: moderate 10 + 10 + 30, vigorous 20, light 15 (not 40 + 20 + 30 + 30).
      assert.deepEqual([wk.moderate_min, wk.vigorous_min, wk.light_min], [50, 20, 15]);
      assert.equal(wk.equivalent_min, 90);
      await c.closeAndWait();
    });

    it('a daily summary and the sessions of that day combine as the larger per intensity, not the sum', async () => {
      const c = await srv.login(newUser('summary'), 'phone');
      const mon = mondayWeeksAgo(3);
      const tue = addDays(mon, 1);
      const week = isoWeek(mon);
      const run = session('r-1', 'running', at(tue, 7, 0, 480), 20, 480); // vigorous 20
      const walk = session('w-1', 'walking', at(tue, 12, 0, 480), 15, 480); // moderate 15
      assert.equal((await upload(c, [run.item, walk.item])).accepted, 2);
      const sums = [
        { date: tue, mo: 50, vi: 5, li: 120 },
        { date: addDays(mon, 4), mo: 30, vi: 0, li: 0 }, // a day with no sessions
      ];
      const r = await summaries(c, sums.map((s) => ({
        date: s.date, utc_offset: '+08:00', source: 'fitbit',
        recorded_at: rfc3339(at(s.date, 23, 30, 480), 480),
        moderate_min: s.mo, vigorous_min: s.vi, light_min: s.li, steps: 8000,
      })));
      assert.deepEqual(r.results.map((x) => [x.status, x.date, x.source, x.weeks]),
        [['applied', tue, 'fitbit', [week]], ['applied', addDays(mon, 4), 'fitbit', [week]]]);
      const wk = await weekGet(c, week);
      const days = model([run.model, walk.model], sums);
      assertWeek(wk, days, week);
      const day = wk.days[1];
      assert.deepEqual([day.moderate_min, day.vigorous_min, day.light_min], [50, 20, 120]);
      await c.closeAndWait();
    });

    it('summaries: the newest recorded_at wins whatever the arrival order (older after newer is stale)', async () => {
      const c = await srv.login(newUser('newest'), 'phone');
      const mon = mondayWeeksAgo(4);
      const week = isoWeek(mon);
      const snap = (date, hh, mo, vi) => ({
        date, utc_offset: '+08:00', source: 'garmin',
        recorded_at: rfc3339(at(date, hh, 0, 480), 480), moderate_min: mo, vigorous_min: vi,
      });
      const d1 = addDays(mon, 2);
      const d2 = addDays(mon, 3);
      // Day 1: newer first, then the older one -> stale. Day 2: older, then newer -> both applied.
      const r1 = await summaries(c, [snap(d1, 22, 60, 20)]);
      const r2 = await summaries(c, [snap(d1, 12, 30, 10), snap(d2, 12, 10, 0), snap(d2, 22, 45, 15)]);
      assert.equal(r1.results[0].status, 'applied');
      assert.deepEqual(r2.results.map((x) => x.status), ['stale', 'applied', 'applied']);
      assert.deepEqual(r2.results[0].weeks, []);
      assert.equal(r2.accepted, 3); // stale is an answer, not a failure
      // The same snapshot again is a duplicate.
      const r3 = await summaries(c, [snap(d1, 22, 60, 20)]);
      assert.equal(r3.results[0].status, 'duplicate');
      const wk = await weekGet(c, week);
      assertWeek(wk, model([], [{ date: d1, mo: 60, vi: 20 }, { date: d2, mo: 45, vi: 15 }]), week);
      await c.closeAndWait();
    });

    it('a session across Sunday midnight at +08:00 is split between two ISO weeks', async () => {
      const c = await srv.login(newUser('midnight'), 'phone');
      const sunday = addDays(mondayWeeksAgo(3), 6);
      const w1 = isoWeek(sunday);
      const w2 = isoWeek(addDays(sunday, 1));
      assert.notEqual(w1, w2);
      const s = session('late-1', 'walking', at(sunday, 23, 30, 480), 60, 480);
      const r = await upload(c, [s.item]);
      assert.deepEqual(r.results[0].weeks, [w1, w2]);
      const days = model([s.model]);
      const a = await weekGet(c, w1);
      const b = await weekGet(c, w2);
      assertWeek(a, days, w1);
      assertWeek(b, days, w2);
      assert.equal(a.days[6].moderate_min, 30);
      assert.equal(b.days[0].moderate_min, 30);
      await c.closeAndWait();
    });

    it("a +05:45 session is dated by its own offset, not the server's or the programme's", async () => {
      const c = await srv.login(newUser('nepal'), 'phone');
      const wed = addDays(mondayWeeksAgo(2), 2);
      const week = isoWeek(wed);
      const off = 5 * 60 + 45;
      // 23:50+05:45 for 20 min: 10 min on Wednesday and 10 on Thursday, local time in
      // Kathmandu. At +08:00 the whole session would fall on Thursday 02:05-02:25.
      const s = session('ktm-1', 'walking', at(wed, 23, 50, off), 20, off);
      assert.equal(s.item.start, `${wed}T23:50:00+05:45`);
      assert.equal((await upload(c, [s.item])).accepted, 1);
      const wk = await weekGet(c, week);
      assertWeek(wk, model([s.model]), week);
      assert.equal(wk.days[2].moderate_min, 10);
      assert.equal(wk.days[3].moderate_min, 10);
      await c.closeAndWait();
    });

    it('profile.set birth_year and pregnant change the band and the target in week.get', async () => {
      const user = newUser('bands');
      const c = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const isoYear = Number(week.slice(0, 4));
      // moderate 100 + vigorous 40: mvpa 140 (< 150), equivalent 180 (>= 150).
      const s1 = session('b-1', 'walking', at(mon, 7, 0, 480), 100, 480);
      const s2 = session('b-2', 'running', at(addDays(mon, 1), 7, 0, 480), 40, 480);
      assert.equal((await upload(c, [s1.item, s2.item])).accepted, 2);
      const days = model([s1.model, s2.model]);

      let wk = await weekGet(c, week);
      assertWeek(wk, days, week);
      assert.equal(wk.band, 'adults'); // no birth year: scored as an adult
      assert.deepEqual(wk.target, { aerobic_min: 150, measure: 'equivalent_min', additional_benefit_min: 300,
        vigorous_days: 0, strength_days: 2, balance_days: 0 });
      assert.equal(wk.aerobic_met, true);
      assert.equal(wk.guideline_met, false); // no strength days

      const p = await c.request({ type: 'profile.set', profile: { birth_year: isoYear - 10, district: 'wan-chai' } });
      assert.equal(p.type, 'profile.set', JSON.stringify(p));
      assert.deepEqual(p.profile, { birth_year: isoYear - 10, district: 'wan-chai' });
      // The band may have changed, so the devices are told about the current week.
      const pushed = await watch.next((m) => m.type === 'progress' && m.week.week !== week, 5000, 'progress after profile.set');
      assert.ok([currentWeek(), c.welcome.week].includes(pushed.week.week));
      assert.equal(pushed.week.band, 'children');
      wk = await weekGet(c, week);
      assert.equal(wk.band, 'children');
      assert.deepEqual(wk.target, { aerobic_min: 420, measure: 'mvpa_min', vigorous_days: 3, strength_days: 3, balance_days: 0 });
      assert.equal(wk.mvpa_min, 140);
      assert.equal(wk.aerobic_met, false);

      const q = await c.request({ type: 'profile.set', profile: { pregnant: true } });
      assert.deepEqual(q.profile, { birth_year: isoYear - 10, district: 'wan-chai', pregnant: true });
      wk = await weekGet(c, week);
      assert.equal(wk.band, 'pregnancy');
      assert.deepEqual(wk.target, { aerobic_min: 150, measure: 'mvpa_min', vigorous_days: 0, strength_days: 0, balance_days: 0 });
      assert.equal(wk.aerobic_met, false); // 140 MVPA minutes, although 180 equivalent

      const o = await c.request({ type: 'profile.set', profile: { pregnant: false, birth_year: isoYear - 70 } });
      assert.deepEqual(o.profile, { birth_year: isoYear - 70, district: 'wan-chai' });
      wk = await weekGet(c, week);
      assert.equal(wk.band, 'older_adults');
      assert.equal(wk.target.balance_days, 3);
      assert.equal(wk.aerobic_met, true);

      const n = await c.request({ type: 'profile.set', profile: { birth_year: null } });
      assert.deepEqual(n.profile, { district: 'wan-chai' });
      assert.equal((await weekGet(c, week)).band, 'adults');
      for (const x of [c, watch]) await x.closeAndWait();
    });

    it('week.get: a given week, the current week by default, and bad week strings', async () => {
      const c = await srv.login(newUser('weeks'), 'phone');
      const before_ = currentWeek();
      const cur = await weekGet(c);
      assert.ok([before_, currentWeek()].includes(cur.week), `current week ${cur.week}, expected ${before_}`);
      assert.equal(cur.week, c.welcome.week);
      assert.equal(cur.days[0].date, mondayOf(cur.days[0].date));
      const past = await weekGet(c, '2026-W01'); // any existing week may be read, data or not
      assert.equal(past.days[0].date, '2025-12-29');
      assert.equal(past.days[6].date, '2026-01-04');
      assert.equal(past.equivalent_min, 0);
      assert.equal((await weekGet(c, '2026-W53')).days[0].date, '2026-12-28'); // 2026 has 53 ISO weeks
      assert.equal((await weekGet(c, null)).week, cur.week);
      for (const bad of ['2025-W53', '2026-W54', '2026-W00', '2026-W1', '2026W10', 'last week', '']) {
        assertError(await c.request({ type: 'week.get', week: bad }), 'invalid_value', 'week');
      }
      assertError(await c.request({ type: 'week.get', week: 202610 }), 'invalid_type', 'week');
      await c.closeAndWait();
    });
  });

  describe('bad input', () => {
    let c, user;
    before(async () => {
      user = newUser('bad');
      c = await srv.login(user, 'phone');
    });
    after(async () => {
      if (c) await c.closeAndWait();
    });

    it('malformed JSON is bad_json (no "re": the id could not be read)', async () => {
      const r = await c.sendRaw('{"type":"week.get","id":"x1"');
      assertError(r, 'bad_json', undefined);
      assert.equal(r.re, undefined);
      assert.ok(c.isOpen);
    });
    it('a JSON array, string or number is bad_message', async () => {
      for (const text of ['[{"type":"week.get"}]', '"week.get"', '42']) assertError(await c.sendRaw(text), 'bad_message', undefined);
    });
    it('a missing type is missing_field "type"; a non-string type is invalid_type', async () => {
      assertError(await c.request({ week: '2026-W10' }), 'missing_field', 'type');
      assertError(await c.request({ type: 7 }), 'invalid_type', 'type');
    });
    it('an id that is not a string of 1..64 characters is invalid_type "id"', async () => {
      assertError(await c.sendRaw('{"type":"week.get","id":5}'), 'invalid_type', 'id');
      assertError(await c.sendRaw(JSON.stringify({ type: 'week.get', id: 'x'.repeat(65) })), 'invalid_type', 'id');
    });
    it('an unknown type is unknown_type', async () => {
      const r = await c.request({ type: 'teleport', id: 'u1' });
      assertError(r, 'unknown_type', 'type', 'u1');
    });
    it('an unknown top-level field is unknown_field naming it', async () => {
      assertError(await c.request({ type: 'week.get', colour: 'red' }), 'unknown_field', 'colour');
      assertError(await c.request({ type: 'activity.upload', activities: [], activity: [] }), 'unknown_field', 'activity');
    });
    it('activities missing or not an array: missing_field / invalid_type "activities"', async () => {
      assertError(await c.request({ type: 'activity.upload' }), 'missing_field', 'activities');
      assertError(await c.request({ type: 'activity.upload', activities: { client_id: 'a' } }), 'invalid_type', 'activities');
      assertError(await c.request({ type: 'summary.upload', summaries: 'none' }), 'invalid_type', 'summaries');
      assertError(await c.request({ type: 'profile.set' }), 'missing_field', 'profile');
    });
    it('501 items is batch_too_large, and nothing of it is stored', async () => {
      const mon = mondayWeeksAgo(5);
      const items = Array.from({ length: 501 }, (_, i) =>
        session(`big-${i}`, 'walking', at(mon, 0, 0, 480) + i * MIN, 1, 480).item);
      assertError(await upload(c, items), 'batch_too_large', 'activities');
      assert.equal((await weekGet(c, isoWeek(mon))).moderate_min, 0);
      const ok = await upload(c, items.slice(0, 500));
      assert.equal(ok.accepted, 500);
      assert.equal((await weekGet(c, isoWeek(mon))).moderate_min, 500);
    });

    it('each invalid item field gets its own code and field; the good items are created and counted', async () => {
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const t = at(addDays(mon, 3), 8, 0, 480);
      const base = { type: 'walking', start: rfc3339(t, 480), duration_s: 600 };
      const good = [
        session('ok-0', 'walking', t, 10, 480),
        session('ok-4', 'running', t + 60 * MIN, 10, 480),
        session('ok-13', 'yoga', t + 120 * MIN, 10, 480),
      ];
      const now = Date.now();
      const cases = [
        [good[0].item, null],
        [{ client_id: 'e-1', type: 'walking', duration_s: 600 }, ['missing_field', 'start']],
        [{ ...base, client_id: 'e-2', start: rfc3339(t, 480).slice(0, 19) }, ['invalid_value', 'start']],
        [{ ...base, client_id: 'e-3', start: `${addDays(mon, 3)}T08:00:00+15:00` }, ['bad_offset', 'start']],
        [good[1].item, null],
        [{ ...base, client_id: 'e-5', duration_s: 0 }, ['duration_out_of_range', 'duration_s']],
        [{ ...base, client_id: 'e-6', duration_s: 90000 }, ['duration_out_of_range', 'duration_s']],
        [{ ...base, client_id: 'e-7', start: rfc3339(now + 11 * MIN, 480) }, ['future_time', 'start']],
        [{ ...base, client_id: 'e-8', start: rfc3339(now - 63 * DAY, 480) }, ['too_old', 'start']],
        [{ ...base, client_id: 'e-9', type: 'zorbing' }, ['unknown_activity_type', 'type']],
        [{ ...base, client_id: 'e-10', strength: 'yes' }, ['invalid_type', 'strength']],
        [{ ...base, client_id: 'e-11', colour: 'red' }, ['unknown_field', 'colour']],
        [{ ...base, client_id: 'bad id' }, ['invalid_value', 'client_id']],
        [good[2].item, null],
        [{ ...base, client_id: undefined }, ['missing_field', 'client_id']],
        [{ ...base, client_id: 'e-15', duration_s: '600' }, ['invalid_type', 'duration_s']],
        [{ ...base, client_id: 'e-16', end: rfc3339(t + 10 * MIN, 480) }, ['invalid_value', 'end']],
        [{ ...base, client_id: 'e-17', intensity: 'hard' }, ['invalid_value', 'intensity']],
        [{ ...base, client_id: 'e-18', met: 40 }, ['invalid_value', 'met']],
        [{ ...base, client_id: 'e-19', start: rfc3339(now - MIN, 480), duration_s: 900 }, ['future_time', 'duration_s']],
        ['not an object', ['invalid_type', null]],
      ];
      const r = await upload(c, cases.map(([item]) => item));
      assert.equal(r.results.length, cases.length);
      cases.forEach(([item, want], i) => {
        const got = r.results[i];
        assert.equal(got.index, i);
        if (!want) {
          assert.equal(got.status, 'created', JSON.stringify(got));
          assert.equal(got.client_id, item.client_id);
          return;
        }
        const [code, field] = want;
        assert.equal(got.status, 'error', `item ${i}: ${JSON.stringify(got)}`);
        assert.equal(got.code, code, `item ${i}: ${JSON.stringify(got)}`);
        assert.equal(got.field, field ? `activities[${i}].${field}` : `activities[${i}]`, `item ${i}`);
        assert.ok(got.message.length > 0);
        assert.equal(got.retryable, undefined);
      });
      assert.equal(r.accepted, 3);
      assert.equal(r.rejected, cases.length - 3);
      assertWeek(await weekGet(c, week), model(good.map((s) => s.model)), week);
    });

    it('invalid summaries and profiles name their field too', async () => {
      const mon = mondayWeeksAgo(2);
      const d = addDays(mon, 5);
      const ok = { date: d, utc_offset: '+08:00', source: 'fitbit', recorded_at: `${d}T23:00:00+08:00`, moderate_min: 10, vigorous_min: 0 };
      const cases = [
        [{ ...ok, moderate_min: 1.5 }, 'invalid_type', 'moderate_min'],
        [{ ...ok, recorded_at: undefined }, 'missing_field', 'recorded_at'],
        [{ ...ok, utc_offset: '+15:00' }, 'bad_offset', 'utc_offset'],
        [{ ...ok, utc_offset: '+8' }, 'invalid_value', 'utc_offset'],
        [{ ...ok, date: '2026-02-30' }, 'invalid_value', 'date'],
        [{ ...ok, date: addDays(localDate(Date.now(), 480), 2) }, 'future_time', 'date'],
        [{ ...ok, moderate_min: 1000, vigorous_min: 500 }, 'invalid_value', 'moderate_min'],
        [{ ...ok, heart_rate: 80 }, 'unknown_field', 'heart_rate'],
      ];
      const r = await summaries(c, cases.map(([s]) => s));
      cases.forEach(([, code, field], i) => {
        assert.equal(r.results[i].code, code, JSON.stringify(r.results[i]));
        assert.equal(r.results[i].field, `summaries[${i}].${field}`);
      });
      assert.equal(r.rejected, cases.length);
      assertError(await c.request({ type: 'profile.set', profile: { district: 'Wan Chai' } }), 'invalid_value', 'profile.district');
      assertError(await c.request({ type: 'profile.set', profile: { birth_year: '1990' } }), 'invalid_type', 'profile.birth_year');
      assertError(await c.request({ type: 'profile.set', profile: { nickname: 'x' } }), 'unknown_field', 'profile.nickname');
      assertError(await c.request({ type: 'profile.set', profile: [] }), 'invalid_type', 'profile');
    });

    it('a binary frame is bad_message, and the connection still works', async () => {
      const r = await c.sendRaw(Buffer.from('{"type":"week.get"}'), undefined, 5000, { binary: true });
      assertError(r, 'bad_message', undefined);
      assert.equal((await weekGet(c)).week, currentWeek());
    });

    it('a fragmented message is reassembled', async () => {
      const reply = c.next((m) => m.re === 'frag', 5000, 'the reply to a fragmented week.get');
      await c.send('{"type":"week.get",', { fin: false });
      await c.send('"id":"frag",', { fin: false });
      await c.send('"week":"2026-W10"}', { fin: true });
      assert.equal((await reply).week.week, '2026-W10');
    });
  });

  describe('limits (max_batch 5, max_message_bytes 4096)', () => {
    let small, c;
    before(async () => {
      small = await startServer({ env: { FITSYNC_MAX_BATCH: '5', FITSYNC_MAX_MESSAGE_BYTES: '4096' } });
      c = await small.login(newUser('limits'), 'phone');
    });
    after(async () => {
      if (c) await c.closeAndWait();
      if (small) await small.stop();
    });

    it('welcome reports the configured limits', () => {
      assert.equal(c.welcome.limits.max_batch, 5);
      assert.equal(c.welcome.limits.max_message_bytes, 4096);
    });

    it('6 items is batch_too_large; 5 are fine', async () => {
      const mon = mondayWeeksAgo(2);
      const items = Array.from({ length: 6 }, (_, i) => session(`l-${i}`, 'walking', at(mon, 9, i * 10, 480), 5, 480).item);
      const r = await c.request({ type: 'activity.upload', id: 'big', activities: items });
      assertError(r, 'batch_too_large', 'activities', 'big');
      assert.match(r.message, /6/);
      assert.equal((await upload(c, items.slice(0, 5))).accepted, 5);
      assert.equal((await weekGet(c, isoWeek(mon))).moderate_min, 25);
    });

    it('a 10 KB message is too_large, and the connection still works', async () => {
      const big = JSON.stringify({ type: 'week.get', id: 'huge', pad: 'x'.repeat(10 * 1024) });
      const r = await c.sendRaw(big, (m) => m.type === 'error' && m.code === 'too_large');
      assertError(r, 'too_large', undefined);
      assert.equal(r.re, undefined); // the id inside was never parsed
      assert.ok(c.isOpen);
      assert.equal((await weekGet(c)).week, currentWeek());
    });

    it('a 10 KB message sent as several fragments is too_large too, and the connection still works', async () => {
      const pending = c.next((m) => m.type === 'error' && m.code === 'too_large', 5000, 'too_large');
      await c.send('{"type":"week.get","pad":"', { fin: false });
      for (let i = 0; i < 4; i++) await c.send('y'.repeat(2500), { fin: false });
      await c.send('"}', { fin: true });
      assertError(await pending, 'too_large', undefined);
      assert.ok(c.isOpen);
      // Just under the limit, in fragments, is fine.
      const reply = c.next((m) => m.re === 'fits', 5000, 'the reply to a message under the limit');
      const head = '{"type":"week.get","id":"fits","week":"2026-W10","pad":"';
      const pad = 'z'.repeat(4096 - head.length - 2);
      await c.send(head, { fin: false });
      await c.send(pad, { fin: false });
      await c.send('"}', { fin: true });
      assertError(await reply, 'unknown_field', 'pad'); // parsed: only the field is unknown
    });
  });

  describe('Redis outage and graceful stop', { skip: embeddedOnly }, () => {
    let srv2;
    before(async () => {
      srv2 = await startServer({ secret: '' }); // secret created in DATA/token.secret
    });
    after(async () => {
      if (srv2) await srv2.stop();
    });

    it('fitsyncd made DATA/token.secret, and fitsync-token --data-dir mints with it', async () => {
      assert.match(srv2.secret, /^[0-9a-f]{64}$/);
      const user = newUser('file');
      const tool = mintTokenWithTool({ sub: user, dataDir: srv2.dataDir });
      const c = await connect(srv2.url);
      const w = await c.request({ type: 'hello', token: tool, device_id: 'd' });
      assert.equal(w.type, 'welcome', JSON.stringify(w));
      await c.closeAndWait();
    });

    it('while Redis is down, uploads answer unavailable (retryable) or succeed, never silently; data survives', async (t) => {
      const user = newUser('outage');
      const c = await srv2.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const kept = [];
      const pre = session('pre-1', 'running', at(mon, 6, 0, 480), 30, 480);
      assert.equal((await upload(c, [pre.item])).results[0].status, 'created');
      kept.push(pre.model);
      await sleep(1500); // appendfsync everysec

      const pids = srv2.redisPids();
      assert.equal(pids.length, 1, `redis-server of ${srv2.dataDir}`);
      process.kill(pids[0], 'SIGKILL');
      const killedAt = Date.now();

      // Health, polled quickly in the background until it is 200 again after a 503.
      const health = [];
      let polling = true;
      const poller = (async () => {
        while (polling && Date.now() - killedAt < 20000) {
          const h = await httpGet(srv2.port, '/healthz', 1000).catch((e) => ({ status: e.message }));
          health.push(h);
          await sleep(20);
        }
      })();

      // A request that was already written to the dying Redis is answered when the
      // store gives up on it: after at most redis.command_timeout_ms (5 s by default).
      const ANSWER_MS = 5000 + 3000;
      const statuses = [];
      let slowest = 0;
      let i = 0;
      let createdAfter = false;
      while (Date.now() - killedAt < 20000) {
        const s = session(`during-${i}`, 'walking', at(addDays(mon, 1), 6, 0, 480) + i * MIN, 1, 480);
        const sentAt = Date.now();
        const r = await upload(c, [s.item], ANSWER_MS);
        slowest = Math.max(slowest, Date.now() - sentAt);
        assert.equal(r.type, 'activity.upload', JSON.stringify(r));
        const item = r.results[0];
        statuses.push(item.status === 'error' ? item.code : item.status);
        if (item.status === 'created') {
          kept.push(s.model);
          createdAfter = true;
        } else {
          assert.equal(item.status, 'error', JSON.stringify(item));
          assert.equal(item.code, 'unavailable', JSON.stringify(item));
          assert.equal(item.retryable, true);
          assert.equal(item.field, 'activities[0]');
          assert.equal(r.accepted, 0);
        }
        // A read in the window is either an answer or a retryable error too.
        const w = await c.request({ type: 'week.get', week }, ANSWER_MS);
        if (w.type === 'error') {
          assertError(w, 'unavailable', undefined);
          assert.equal(w.retryable, true);
        }
        if (createdAfter && health.some((h) => h.status === 503) && health.at(-1)?.status === 200) break;
        i++;
        await sleep(50);
      }
      polling = false;
      await poller;
      t.diagnostic(`outage: ${statuses.join(',')}; slowest answer ${slowest} ms`);
      assert.ok(createdAfter, `no upload succeeded after the restart: ${statuses.join(',')}`);
      assert.ok(statuses.includes('unavailable'), `no upload saw the outage: ${statuses.join(',')}`);
      assert.ok(health.some((h) => h.status === 503), 'GET /healthz never said 503 while Redis was down');
      for (const h of health.filter((x) => x.status === 503)) assert.deepEqual([h.body.status, h.body.redis], ['degraded', 'down']);
      assert.ok(health.every((h) => h.status === 200 || h.status === 503), JSON.stringify(health.map((h) => h.status)));
      assert.equal((await srv2.health()).status, 200);

      // A new upload works, and everything acknowledged (before and after the kill) is there.
      const post = session('post-1', 'yoga', at(addDays(mon, 2), 6, 0, 480), 20, 480);
      assert.equal((await upload(c, [post.item])).results[0].status, 'created');
      kept.push(post.model);
      // What was acknowledged before the kill is a duplicate now, not new.
      assert.equal((await upload(c, [pre.item])).results[0].status, 'duplicate');
      assertWeek(await weekGet(c, week), model(kept), week);
      await c.closeAndWait();
    });

    it('SIGTERM: fitsyncd exits 0 within 10 s and its redis-server is gone', async () => {
      const c = await srv2.login(newUser('stop'), 'phone'); // a connected client does not hold it up
      const redis = srv2.redisPids();
      assert.equal(redis.length, 1);
      const r = await srv2.signal('SIGTERM', 10000);
      assert.equal(r.signal, null);
      assert.equal(r.code, 0, srv2.output());
      assert.ok(r.ms < 10000);
      await withTimeout(c.closed, 3000, 'the client to see the close');
      await waitFor(() => srv2.redisPids().length === 0, { timeout: 3000, what: 'redis-server to exit' });
      await assert.rejects(httpGet(srv2.port, '/healthz', 1000));
    });
  });
});

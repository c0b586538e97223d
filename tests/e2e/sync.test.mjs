// sync.test.mjs: offline-first sync end to end (issue 3), over real
// WebSockets against a real fitsyncd with its embedded redis-server:
// activity.update and activity.delete with revisions, summary.delete, the
// change feed (change pushes, sync.pull, cursors, the window,
// sync.snapshot), history.get with the streak, the rate limit, and the
// member's own data (account.export, account.delete). docs/PROTOCOL.md is the
// spec these tests hold the server to.
//
// Servers, each on a free port in a fresh temporary dir:
//   main    FITSYNC_MAX_AGE_WEEKS=0 (old weeks can be written, for the
//           streak) and a rate limit high enough not to interfere;
//   window  FITSYNC_SYNC_WINDOW_DAYS=1: expired cursors and sync.snapshot;
//   rate    FITSYNC_RATE_MESSAGES_PER_S=5, FITSYNC_RATE_BURST=5.
// One user per test, so tests never see each other's data or pushes.
//
// Expected figures are computed here (a minute-by-minute model of each local
// day), independently of the C and Lua code.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/sync.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  sleep,
  withTimeout,
  MIN,
  DAY,
  rfc3339,
  localDate,
  addDays,
  at,
  mondayOf,
  isoWeek,
  weekRange,
  dayModel,
  userKey,
} from './lib.mjs';

/* ------------------------------------------------------------------ */
/* calendar, model, helpers                                            */

const PROGRAMME_OFFSET = 8 * 60; // config/fitsync.json "timezone": "+08:00"
const HK = 8 * 60;
const currentWeek = () => isoWeek(localDate(Date.now(), PROGRAMME_OFFSET));
/* The Monday (a local date) of the ISO week k weeks before the current one. */
const mondayWeeksAgo = (k) => addDays(mondayOf(localDate(Date.now(), PROGRAMME_OFFSET)), -7 * k);

const LEVEL = { light: 1, moderate: 2, vigorous: 3 };
const TYPE_LEVEL = { running: 3, walking: 2, yoga: 1 }; // config/met.json: 8.0, 4.3, 2.5

/* A session item and its model twin (sessions start and last whole minutes). */
function session(clientId, type, start, minutes, off, extra = {}) {
  const item = { client_id: clientId, type, start: rfc3339(start, off), duration_s: minutes * 60, ...extra };
  const level = extra.intensity ? LEVEL[extra.intensity] : TYPE_LEVEL[type];
  return { item, model: { start, end: start + minutes * MIN, off, level } };
}

/* The day rule: union of sessions, highest intensity wins a minute; summaries per intensity as the larger. */
const model = dayModel; // lib.mjs: the day rule, computed independently of the server

function assertWeek(wk, days, week) {
  assert.equal(wk.week, week);
  const want = { moderate_min: 0, vigorous_min: 0, light_min: 0 };
  for (const day of wk.days) {
    const m = days.get(day.date) || { mo: 0, vi: 0, li: 0 };
    assert.deepEqual([day.moderate_min, day.vigorous_min, day.light_min, day.equivalent_min],
      [m.mo, m.vi, m.li, m.mo + 2 * m.vi], `day ${day.date}`);
    want.moderate_min += m.mo;
    want.vigorous_min += m.vi;
    want.light_min += m.li;
  }
  assert.deepEqual({ moderate_min: wk.moderate_min, vigorous_min: wk.vigorous_min, light_min: wk.light_min }, want,
    `totals of ${week}`);
  assert.equal(wk.equivalent_min, want.moderate_min + 2 * want.vigorous_min);
}

let userSeq = 0;
const newUser = (name) => `${name}-${process.pid}-${++userSeq}`;

const upload = (c, activities) => c.request({ type: 'activity.upload', activities });
const putSummaries = (c, summaries) => c.request({ type: 'summary.upload', summaries });
async function weekGet(c, week) {
  const r = await c.request(week === undefined ? { type: 'week.get' } : { type: 'week.get', week });
  assert.equal(r.type, 'week.get', JSON.stringify(r));
  return r.week;
}
async function pullAll(c, cursor, limit) {
  const changes = [];
  for (;;) {
    const r = await c.request(limit ? { type: 'sync.pull', cursor, limit } : { type: 'sync.pull', cursor });
    assert.equal(r.type, 'sync.pull', JSON.stringify(r));
    changes.push(...r.changes);
    cursor = r.cursor;
    if (!r.more) return { changes, cursor };
  }
}

function assertError(reply, code, field) {
  assert.equal(reply.type, 'error', JSON.stringify(reply));
  assert.equal(reply.code, code, JSON.stringify(reply));
  if (field !== undefined) assert.equal(reply.field, field, JSON.stringify(reply));
  assert.equal(typeof reply.message, 'string');
}

/* Cursors are stream ids "ms-seq": compared as two numbers. */
function cursorLess(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  return am < bm || (am === bm && as < bs);
}

/* Every key of any type that holds name as a member or field (a trace of a user in a shared key). */
function keysHolding(srv, name) {
  const script = `local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  local t = redis.call('TYPE', k).ok
  if (t == 'zset' and redis.call('ZSCORE', k, ARGV[1])) or (t == 'set' and redis.call('SISMEMBER', k, ARGV[1]) == 1)
     or (t == 'hash' and redis.call('HEXISTS', k, ARGV[1]) == 1) then out[#out + 1] = k end
end
return out`;
  const out = srv.redisCli(['EVAL', script, '0', name]);
  return out ? out.split('\n').sort() : [];
}

/* A summary item. */
function summary(date, source, recordedAt, mo, vi, extra = {}) {
  return { date, utc_offset: '+08:00', source, recorded_at: rfc3339(recordedAt, HK), moderate_min: mo, vigorous_min: vi, ...extra };
}

const changePushes = (c) => c.takePushes((m) => m.type === 'change');
/* Waits for n change pushes on c (bounded) and returns them. */
async function nextChanges(c, n, timeout = 5000) {
  const got = [];
  while (got.length < n) got.push(await c.nextPush('change', timeout));
  return got;
}

/* ------------------------------------------------------------------ */

describe('offline-first sync (fitsync.v1, issue 3)', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      env: { FITSYNC_MAX_AGE_WEEKS: '0', FITSYNC_RATE_MESSAGES_PER_S: '10000', FITSYNC_RATE_BURST: '10000' },
    });
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  describe('change pushes', () => {
    it('every change reaches the user\'s other devices as a push with its cursor, the same change sync.pull returns', async () => {
      const user = newUser('push');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const other = await srv.login(newUser('bystander'), 'phone');
      assert.equal(watch.welcome.cursor, '0-0');
      const mon = mondayWeeksAgo(2);
      const run = session('run-1', 'running', at(mon, 7, 0, HK), 30, HK, { steps: 4000 });
      const walk = session('walk-1', 'walking', at(mon, 12, 0, HK), 20, HK);

      const up = await upload(phone, [run.item, walk.item]);
      assert.deepEqual(up.results.map((r) => [r.status, r.rev]), [['created', 1], ['created', 1]]);
      const p1 = await nextChanges(watch, 2);
      assert.deepEqual(p1.map((p) => p.change.id), ['run-1', 'walk-1'], 'in the order of the batch');
      for (const [p, s] of [[p1[0], run], [p1[1], walk]]) {
        assert.equal(p.cursor, p.change.cursor);
        assert.deepEqual({ ...p.change, cursor: undefined }, {
          cursor: undefined, kind: 'activity', op: 'upsert', id: s.item.client_id, rev: 1, device_id: 'phone', item: { ...s.item, rev: 1 },
        });
      }
      assert.ok(cursorLess(p1[0].cursor, p1[1].cursor));

      const upd = await phone.request({ type: 'activity.update', client_id: 'walk-1', base_rev: 1, duration_s: 2400 });
      assert.equal(upd.status, 'updated', JSON.stringify(upd));
      const [p2] = await nextChanges(watch, 1);
      assert.equal(p2.cursor, upd.cursor);
      assert.deepEqual(p2.change, {
        cursor: upd.cursor, kind: 'activity', op: 'upsert', id: 'walk-1', rev: 2, device_id: 'phone', item: { ...walk.item, duration_s: 2400, rev: 2 },
      });

      const del = await phone.request({ type: 'activity.delete', client_id: 'run-1' });
      assert.equal(del.status, 'deleted');
      const [p3] = await nextChanges(watch, 1);
      assert.deepEqual(p3, { type: 'change', cursor: del.cursor, change: { cursor: del.cursor, kind: 'activity', op: 'delete', id: 'run-1', rev: 2, device_id: 'phone' } });

      const sm = summary(mon, 'fitbit', at(mon, 22, 0, HK), 30, 5);
      assert.equal((await putSummaries(phone, [sm])).results[0].status, 'applied');
      const sdel = await phone.request({ type: 'summary.delete', date: mon, source: 'fitbit' });
      assert.equal(sdel.status, 'deleted');
      const prof = await phone.request({ type: 'profile.set', profile: { birth_year: 1990 } });
      assert.equal(prof.type, 'profile.set');
      const [p4, p5, p6] = await nextChanges(watch, 3);
      assert.deepEqual([p4.change.kind, p4.change.op, p4.change.id, p4.change.item], ['summary', 'upsert', `${mon}|fitbit`, sm]);
      assert.deepEqual([p5.change.kind, p5.change.op, p5.change.id, p5.cursor, 'item' in p5.change], ['summary', 'delete', `${mon}|fitbit`, sdel.cursor, false]);
      assert.deepEqual([p6.change.kind, p6.change.op, p6.change.id, p6.cursor, p6.change.item], ['profile', 'upsert', 'profile', prof.cursor, { birth_year: 1990 }]);

      // Nothing for duplicates; nothing to the device that made the change; nothing to another user.
      const again = await upload(phone, [run.item, walk.item]);
      assert.deepEqual(again.results.map((r) => r.code ?? r.status), ['deleted', 'conflict']);
      assert.ok(await watch.quiet((m) => m.type === 'change', 400), 'no push for an upload that changed nothing');
      assert.deepEqual(changePushes(phone), [], 'the device that made a change gets no change push');
      assert.deepEqual(changePushes(other), [], 'another user gets nothing');
      // ... but progress pushes go to both devices.
      assert.ok(phone.pushes.some((m) => m.type === 'progress') && watch.pushes.some((m) => m.type === 'progress'));

      // A push is the change object sync.pull returns for that cursor (same fields, same values).
      const pulled = await pullAll(watch, '0-0');
      const pushed = [...p1, p2, p3, p4, p5, p6];
      assert.deepEqual(pulled.changes.map((c) => c.cursor), pushed.map((p) => p.cursor));
      pulled.changes.forEach((ch, i) => assert.deepEqual(pushed[i].change, ch, `push and pull of ${ch.kind} ${ch.op} ${ch.id}`));
      for (const c of [phone, watch, other]) await c.closeAndWait();
    });
  });

  describe('sync.pull', () => {
    it('from an old cursor returns exactly the changes missed, oldest first, in pages', async () => {
      const user = newUser('pull');
      const watch = await srv.login(user, 'watch');
      const phone = await srv.login(user, 'phone');
      // The watch has seen one change, then goes offline.
      const mon = mondayWeeksAgo(3);
      const a0 = session('a0', 'walking', at(mon, 6, 0, HK), 15, HK);
      await upload(phone, [a0.item]);
      const [seen] = await nextChanges(watch, 1);
      await watch.closeAndWait();
      const offline = seen.cursor;

      const a = [1, 2, 3].map((i) => session(`a${i}`, 'running', at(addDays(mon, i), 7, 0, HK), 10 * i, HK));
      await upload(phone, a.map((s) => s.item));
      const u1 = await phone.request({ type: 'activity.update', client_id: 'a1', base_rev: 1, intensity: 'moderate' });
      const d2 = await phone.request({ type: 'activity.delete', client_id: 'a2', base_rev: 1 });
      const d0 = await phone.request({ type: 'activity.delete', client_id: 'a0' });
      await putSummaries(phone, [summary(mon, 'garmin', at(mon, 20, 0, HK), 40, 10)]);
      const pr = await phone.request({ type: 'profile.set', profile: { district: 'wan-chai' } });
      const expected = [
        ['activity', 'upsert', 'a1', 1], ['activity', 'upsert', 'a2', 1], ['activity', 'upsert', 'a3', 1],
        ['activity', 'upsert', 'a1', 2], ['activity', 'delete', 'a2', 2], ['activity', 'delete', 'a0', 2],
        ['summary', 'upsert', `${mon}|garmin`, undefined], ['profile', 'upsert', 'profile', undefined],
      ];

      const back = await srv.login(user, 'watch');
      assert.equal(back.welcome.cursor, pr.cursor, 'welcome carries the newest cursor');
      const pages = [];
      let cursor = offline;
      for (;;) {
        const r = await back.request({ type: 'sync.pull', cursor, limit: 3 });
        assert.equal(r.type, 'sync.pull', JSON.stringify(r));
        assert.ok(r.changes.length <= 3);
        pages.push(r);
        assert.equal(r.cursor, r.changes[r.changes.length - 1].cursor, 'the reply cursor is the last change\'s');
        cursor = r.cursor;
        if (!r.more) break;
      }
      assert.deepEqual(pages.map((p) => [p.changes.length, p.more]), [[3, true], [3, true], [2, false]]);
      const got = pages.flatMap((p) => p.changes);
      assert.deepEqual(got.map((c) => [c.kind, c.op, c.id, c.kind === 'activity' ? c.rev : undefined]), expected);
      assert.ok(got.every((c) => c.device_id === 'phone'));
      for (let i = 1; i < got.length; i++) assert.ok(cursorLess(got[i - 1].cursor, got[i].cursor), 'oldest first');
      assert.deepEqual(got[3].item, { ...a[0].item, intensity: 'moderate', rev: 2 });
      assert.equal(got[3].cursor, u1.cursor);
      assert.equal(got[4].cursor, d2.cursor);
      assert.equal(got[5].cursor, d0.cursor);
      assert.equal('item' in got[4], false, 'a delete carries no item');
      assert.equal(cursor, pr.cursor);

      // From the newest cursor: nothing, and the same cursor back.
      const none = await back.request({ type: 'sync.pull', cursor });
      assert.deepEqual([none.changes, none.cursor, none.more], [[], cursor, false]);
      // From a cursor in the middle: exactly the rest.
      const rest = await back.request({ type: 'sync.pull', cursor: got[4].cursor });
      assert.deepEqual(rest.changes, got.slice(5));
      for (const c of [phone, back]) await c.closeAndWait();
    });

    it('limit defaults to 100 and may be 1..1000', async () => {
      const user = newUser('limit');
      const c = await srv.login(user, 'phone');
      const day = mondayWeeksAgo(2);
      const items = [];
      for (let i = 0; i < 150; i++) items.push(session(`l${i}`, 'walking', at(day, 0, 0, HK) + i * 5 * MIN, 5, HK).item);
      assert.equal((await upload(c, items)).accepted, 150);
      const r = await c.request({ type: 'sync.pull', cursor: '0-0' });
      assert.deepEqual([r.changes.length, r.more], [100, true]);
      const all = await c.request({ type: 'sync.pull', cursor: '0-0', limit: 1000 });
      assert.deepEqual([all.changes.length, all.more], [150, false]);
      assert.deepEqual(all.changes.map((ch) => ch.id), items.map((it) => it.client_id));
      assertError(await c.request({ type: 'sync.pull', cursor: '0-0', limit: 0 }), 'invalid_value', 'limit');
      assertError(await c.request({ type: 'sync.pull', cursor: '0-0', limit: 1001 }), 'invalid_value', 'limit');
      assertError(await c.request({ type: 'sync.pull', cursor: '0-0', limit: '5' }), 'invalid_type', 'limit');
      await c.closeAndWait();
    });

    it('a cursor that was never issued is invalid_value; a missing or malformed one is refused', async () => {
      const user = newUser('badcursor');
      const c = await srv.login(user, 'phone');
      // An empty log: "0-0" is its start, anything else was never issued.
      const empty = await c.request({ type: 'sync.pull', cursor: '0-0' });
      assert.deepEqual([empty.changes, empty.cursor, empty.more], [[], '0-0', false]);
      assertError(await c.request({ type: 'sync.pull', cursor: `${Date.now() - 60000}-0` }), 'invalid_value', 'cursor');
      await c.request({ type: 'profile.set', profile: { gender: 'other' } });
      // A made-up cursor in the future.
      assertError(await c.request({ type: 'sync.pull', cursor: `${Date.now() + DAY}-0` }), 'invalid_value', 'cursor');
      for (const bad of ['abc', '', '12', '-1-0', '1-2-3', '1796020448310-x'])
        assertError(await c.request({ type: 'sync.pull', cursor: bad }), 'invalid_value', 'cursor');
      assertError(await c.request({ type: 'sync.pull', cursor: 1796020448310 }), 'invalid_type', 'cursor');
      assertError(await c.request({ type: 'sync.pull' }), 'missing_field', 'cursor');
      assertError(await c.request({ type: 'sync.pull', cursor: '0-0', since: 1 }), 'unknown_field', 'since');
      await c.closeAndWait();
    });
  });

  describe('activity.update', () => {
    it('applies on the current base_rev: the new rev, the merged item; null removes a field, end replaces duration_s', async () => {
      const user = newUser('upd');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const week = isoWeek(mon);
      const s = session('s1', 'walking', at(mon, 7, 0, HK), 30, HK, { intensity: 'vigorous', steps: 3000 });
      await upload(c, [s.item]);
      const r = await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, intensity: null, end: rfc3339(at(mon, 8, 0, HK), 0) });
      assert.equal(r.type, 'activity.update', JSON.stringify(r));
      assert.equal(r.status, 'updated');
      assert.equal(r.rev, 2);
      assert.equal(r.client_id, 's1');
      assert.match(r.cursor, /^\d+-\d+$/);
      const { duration_s, intensity, ...rest } = s.item;
      assert.deepEqual(r.item, { ...rest, end: rfc3339(at(mon, 8, 0, HK), 0), rev: 2 });
      // walking (moderate) for 60 minutes now
      assertWeek(await weekGet(c, week), model([{ ...s.model, end: s.model.start + 60 * MIN, level: 2 }]), week);
      const r2 = await c.request({ type: 'activity.update', client_id: 's1', base_rev: 2, duration_s: 600 });
      assert.deepEqual([r2.status, r2.rev, r2.item.duration_s, 'end' in r2.item], ['updated', 3, 600, false]);
      assertWeek(await weekGet(c, week), model([{ ...s.model, end: s.model.start + 10 * MIN, level: 2 }]), week);
      await c.closeAndWait();
    });

    it('a stale base_rev is conflict carrying the current item and its rev; nothing changes', async () => {
      const user = newUser('stale');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const mon = mondayWeeksAgo(2);
      const s = session('s1', 'running', at(mon, 7, 0, HK), 20, HK);
      await upload(phone, [s.item]);
      // Both devices edit rev 1 offline; the phone's edit arrives first.
      const first = await phone.request({ type: 'activity.update', client_id: 's1', base_rev: 1, duration_s: 1800 });
      assert.equal(first.status, 'updated');
      const before = await weekGet(watch, isoWeek(mon));
      const r = await watch.request({ type: 'activity.update', client_id: 's1', base_rev: 1, steps: 2500 });
      assertError(r, 'conflict', 'base_rev');
      assert.equal(r.retryable, undefined);
      assert.deepEqual(r.current, { ...s.item, duration_s: 1800, rev: 2 });
      assert.deepEqual(await weekGet(watch, isoWeek(mon)), before);
      // Merged by the app and sent again on the current rev, it applies.
      const merged = await watch.request({ type: 'activity.update', client_id: 's1', base_rev: r.current.rev, steps: 2500 });
      assert.deepEqual([merged.status, merged.rev, merged.item], ['updated', 3, { ...s.item, duration_s: 1800, steps: 2500, rev: 3 }]);
      // A base_rev ahead of the item is a conflict too.
      assertError(await phone.request({ type: 'activity.update', client_id: 's1', base_rev: 9, steps: 1 }), 'conflict', 'base_rev');
      for (const c of [phone, watch]) await c.closeAndWait();
    });

    it('an update retried after it was applied is duplicate: same rev, no new cursor, no push, totals unchanged', async () => {
      const user = newUser('updretry');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const mon = mondayWeeksAgo(2);
      await upload(phone, [session('s1', 'walking', at(mon, 9, 0, HK), 30, HK).item]);
      await nextChanges(watch, 1);
      const msg = { type: 'activity.update', client_id: 's1', base_rev: 1, duration_s: 2700, intensity: 'vigorous' };
      const r1 = await phone.request(msg);
      assert.equal(r1.status, 'updated');
      await nextChanges(watch, 1);
      const w1 = await weekGet(phone, isoWeek(mon));
      const r2 = await phone.request(msg);
      assert.equal(r2.type, 'activity.update', JSON.stringify(r2));
      assert.deepEqual([r2.status, r2.rev, r2.cursor], ['duplicate', 2, undefined]);
      assert.deepEqual(r2.item, r1.item);
      assert.ok(await watch.quiet((m) => m.type === 'change', 400), 'no change push for a duplicate');
      assert.deepEqual(await weekGet(phone, isoWeek(mon)), w1);
      assert.equal(w1.vigorous_min, 45);
      const log = await pullAll(phone, '0-0');
      assert.equal(log.changes.length, 2, 'one log entry for the upload, one for the update');
      for (const c of [phone, watch]) await c.closeAndWait();
    });

    it('an update of a deleted session is conflict with current {client_id, deleted: true, rev}', async () => {
      const user = newUser('upddel');
      const c = await srv.login(user, 'phone');
      await upload(c, [session('s1', 'walking', at(mondayWeeksAgo(2), 9, 0, HK), 30, HK).item]);
      assert.equal((await c.request({ type: 'activity.delete', client_id: 's1', base_rev: 1 })).rev, 2);
      const r = await c.request({ type: 'activity.update', client_id: 's1', base_rev: 2, duration_s: 60 });
      assertError(r, 'conflict', 'base_rev');
      assert.deepEqual(r.current, { client_id: 's1', deleted: true, rev: 2 });
      await c.closeAndWait();
    });

    it('refuses what is not an update: unknown client_id, no base_rev, no change, an unknown field, an invalid result', async () => {
      const user = newUser('updbad');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      await upload(c, [session('s1', 'walking', at(mon, 9, 0, HK), 30, HK).item]);
      assertError(await c.request({ type: 'activity.update', client_id: 'nope', base_rev: 1, steps: 1 }), 'not_found', 'client_id');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', steps: 1 }), 'missing_field', 'base_rev');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 0, steps: 1 }), 'invalid_value', 'base_rev');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: '1', steps: 1 }), 'invalid_type', 'base_rev');
      assertError(await c.request({ type: 'activity.update', base_rev: 1, steps: 1 }), 'missing_field', 'client_id');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1 }), 'missing_field');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, colour: 'red' }), 'unknown_field', 'colour');
      // The merged item is validated like an upload.
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, duration_s: 0 }), 'duration_out_of_range', 'duration_s');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, end: rfc3339(at(mon, 8, 0, HK), HK) }), 'duration_out_of_range', 'end');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, intensity: 'extreme' }), 'invalid_value', 'intensity');
      assertError(await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, start: rfc3339(Date.now() + DAY, HK) }), 'future_time', 'start');
      // Nothing was applied.
      const log = await pullAll(c, '0-0');
      assert.equal(log.changes.length, 1);
      await c.closeAndWait();
    });

    it('moving a session to another week changes both weeks, with a progress push for each', async () => {
      const user = newUser('move');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const from = mondayWeeksAgo(3);
      const to = addDays(mondayWeeksAgo(1), 3);
      const s = session('s1', 'running', at(from, 18, 0, HK), 40, HK);
      await upload(phone, [s.item]);
      assertWeek(await weekGet(phone, isoWeek(from)), model([s.model]), isoWeek(from));
      watch.takePushes();
      const r = await phone.request({ type: 'activity.update', client_id: 's1', base_rev: 1, start: rfc3339(at(to, 6, 30, -300), -300) });
      assert.equal(r.status, 'updated', JSON.stringify(r));
      const moved = { ...s.model, start: at(to, 6, 30, -300), end: at(to, 6, 30, -300) + 40 * MIN, off: -300 };
      assertWeek(await weekGet(phone, isoWeek(from)), model([]), isoWeek(from));
      assertWeek(await weekGet(phone, isoWeek(to)), model([moved]), isoWeek(to));
      // The other device hears of both weeks, with their new figures.
      await watch.next((m) => m.type === 'progress' && m.week.week === isoWeek(from) && m.week.vigorous_min === 0, 5000, 'progress of the old week');
      await watch.next((m) => m.type === 'progress' && m.week.week === isoWeek(to) && m.week.vigorous_min === 40, 5000, 'progress of the new week');
      for (const c of [phone, watch]) await c.closeAndWait();
    });

    it('two edits made offline and sent back to back both survive', async () => {
      // The app edits twice while offline (rev 1 -> 2 -> 3) and sends both at once on reconnect.
      const user = newUser('twoedits');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const n = 20;
      const items = [];
      for (let i = 0; i < n; i++) items.push(session(`s${i}`, 'walking', at(addDays(mon, i % 7), 6, 0, HK) + i * 45 * MIN, 30, HK).item);
      await upload(c, items);
      const replies = [];
      for (let i = 0; i < n; i++) {
        replies.push(c.pipeline({ type: 'activity.update', client_id: `s${i}`, base_rev: 1, duration_s: 2400 }));
        replies.push(c.pipeline({ type: 'activity.update', client_id: `s${i}`, base_rev: 2, intensity: 'vigorous' }));
      }
      const got = await withTimeout(Promise.all(replies), 10000, 'the update replies');
      for (let i = 0; i < n; i++) {
        const [a, b] = [got[2 * i], got[2 * i + 1]];
        assert.deepEqual([a.status, a.rev], ['updated', 2], JSON.stringify(a));
        assert.equal(b.status, 'updated', JSON.stringify(b));
        assert.deepEqual(b.item, { ...items[i], duration_s: 2400, intensity: 'vigorous', rev: 3 }, 'the second edit keeps the first');
      }
      const week = await weekGet(c, isoWeek(mon));
      assert.equal(week.vigorous_min, n * 40);
      await c.closeAndWait();
    });

    it('a late retry of an older edit is conflict (or duplicate), never a validation error of a stale merge', async () => {
      const user = newUser('lateedit');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      await upload(c, [session('s1', 'walking', at(mon, 9, 0, HK), 30, HK).item]);
      const e1 = { type: 'activity.update', client_id: 's1', base_rev: 1, end: rfc3339(at(mon, 10, 0, HK), HK) };
      assert.equal((await c.request(e1)).status, 'updated');
      const e2 = await c.request({ type: 'activity.update', client_id: 's1', base_rev: 2, start: rfc3339(at(addDays(mon, 2), 9, 0, HK), HK), duration_s: 1200 });
      assert.equal(e2.status, 'updated');
      // e1's reply was lost; the app sends it again. Merged onto rev 3 it would end before it starts.
      const r = await c.request(e1);
      assertError(r, 'conflict', 'base_rev');
      assert.equal(r.current.rev, 3);
      await c.closeAndWait();
    });
  });

  describe('activity.delete', () => {
    it('recomputes the day from what remains (the union of the other sessions), and the week and the pushes follow', async () => {
      const user = newUser('del');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const day = addDays(mondayWeeksAgo(2), 1);
      const week = isoWeek(day);
      // Phone walk 07:00-07:40 (moderate), watch run 07:10-07:30 (vigorous): 20 + 20.
      const walk = session('p-walk', 'walking', at(day, 7, 0, HK), 40, HK);
      const run = session('w-run', 'running', at(day, 7, 10, HK), 20, HK);
      await upload(phone, [walk.item]);
      await upload(watch, [run.item]);
      const w0 = await weekGet(phone, week);
      assertWeek(w0, model([walk.model, run.model]), week);
      assert.deepEqual([w0.moderate_min, w0.vigorous_min], [20, 20]);
      phone.takePushes();
      const d = await watch.request({ type: 'activity.delete', client_id: 'w-run' });
      assert.deepEqual([d.type, d.client_id, d.rev, d.status], ['activity.delete', 'w-run', 2, 'deleted']);
      assert.match(d.cursor, /^\d+-\d+$/);
      const w1 = await weekGet(phone, week);
      assertWeek(w1, model([walk.model]), week);
      assert.deepEqual([w1.moderate_min, w1.vigorous_min], [40, 0], 'the walk\'s minutes are moderate again');
      const prog = await phone.nextPush('progress');
      assert.deepEqual(prog.week, w1, 'the progress push carries the recomputed week');
      const ch = await phone.nextPush('change');
      assert.deepEqual([ch.change.op, ch.change.id, ch.change.device_id], ['delete', 'w-run', 'watch']);
      await phone.request({ type: 'activity.delete', client_id: 'p-walk', base_rev: 1 });
      const w2 = await weekGet(phone, week);
      assertWeek(w2, model([]), week);
      assert.equal(w2.active_days, 0);
      for (const c of [phone, watch]) await c.closeAndWait();
    });

    it('deleting twice is duplicate; an unknown client_id is not_found; a stale base_rev is conflict with current', async () => {
      const user = newUser('del2');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const s = session('s1', 'yoga', at(mon, 9, 0, HK), 30, HK);
      await upload(c, [s.item]);
      await c.request({ type: 'activity.update', client_id: 's1', base_rev: 1, duration_s: 1200 });
      const stale = await c.request({ type: 'activity.delete', client_id: 's1', base_rev: 1 });
      assertError(stale, 'conflict', 'base_rev');
      assert.deepEqual(stale.current, { ...s.item, duration_s: 1200, rev: 2 });
      assertWeek(await weekGet(c, isoWeek(mon)), model([{ ...s.model, end: s.model.start + 20 * MIN }]), isoWeek(mon));
      const d1 = await c.request({ type: 'activity.delete', client_id: 's1', base_rev: 2 });
      assert.deepEqual([d1.status, d1.rev], ['deleted', 3]);
      const d2 = await c.request({ type: 'activity.delete', client_id: 's1', base_rev: 2 });
      assert.deepEqual([d2.type, d2.status, d2.rev, d2.cursor], ['activity.delete', 'duplicate', 3, undefined]);
      const d3 = await c.request({ type: 'activity.delete', client_id: 's1' });
      assert.deepEqual([d3.status, d3.rev], ['duplicate', 3]);
      assertError(await c.request({ type: 'activity.delete', client_id: 'never-was' }), 'not_found', 'client_id');
      assertError(await c.request({ type: 'activity.delete' }), 'missing_field', 'client_id');
      assertError(await c.request({ type: 'activity.delete', client_id: 's1', base_rev: -1 }), 'invalid_value', 'base_rev');
      assertWeek(await weekGet(c, isoWeek(mon)), model([]), isoWeek(mon));
      const log = await pullAll(c, '0-0');
      assert.deepEqual(log.changes.map((x) => [x.op, x.rev]), [['upsert', 1], ['upsert', 2], ['delete', 3]]);
      await c.closeAndWait();
    });

    it('a session uploaded again after its delete answers "deleted" and stays deleted (a late retry never resurrects)', async () => {
      const user = newUser('resurrect');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(2);
      const keep = session('keep', 'walking', at(mon, 8, 0, HK), 30, HK);
      const gone = session('gone', 'running', at(mon, 8, 15, HK), 30, HK);
      await upload(c, [keep.item, gone.item]);
      await c.request({ type: 'activity.delete', client_id: 'gone' });
      const w = await weekGet(c, isoWeek(mon));
      const r = await upload(c, [gone.item, { ...gone.item, duration_s: 600 }]);
      assert.deepEqual(r.results.map((x) => [x.status, x.rev, x.weeks]), [['deleted', 2, []], ['deleted', 2, []]]);
      assert.equal(r.accepted, 2);
      assert.deepEqual(await weekGet(c, isoWeek(mon)), w);
      assertWeek(w, model([keep.model]), isoWeek(mon));
      await c.closeAndWait();
    });
  });

  describe('summary.delete', () => {
    it('the day falls back to the sessions; twice is duplicate; an older snapshot stays out, a newer one comes back', async () => {
      const user = newUser('sdel');
      const c = await srv.login(user, 'phone');
      const day = addDays(mondayWeeksAgo(2), 2);
      const week = isoWeek(day);
      const run = session('r', 'running', at(day, 7, 0, HK), 20, HK);
      await upload(c, [run.item]);
      const s1 = summary(day, 'fitbit', at(day, 21, 0, HK), 45, 12, { light_min: 100 });
      await putSummaries(c, [s1]);
      assertWeek(await weekGet(c, week), model([run.model], [s1]), week);
      const d = await c.request({ type: 'summary.delete', date: day, source: 'fitbit' });
      assert.deepEqual([d.type, d.date, d.source, d.status], ['summary.delete', day, 'fitbit', 'deleted']);
      assert.match(d.cursor, /^\d+-\d+$/);
      assertWeek(await weekGet(c, week), model([run.model]), week);
      const again = await c.request({ type: 'summary.delete', date: day, source: 'fitbit' });
      assert.deepEqual([again.status, again.cursor], ['duplicate', undefined]);
      assertError(await c.request({ type: 'summary.delete', date: day, source: 'garmin' }), 'not_found');
      assertError(await c.request({ type: 'summary.delete', date: '2026-02-30', source: 'fitbit' }), 'invalid_value', 'date');
      assertError(await c.request({ type: 'summary.delete', date: day }), 'missing_field', 'source');
      // Older than (or as old as) the deleted snapshot: stale, the day stays without it.
      const older = summary(day, 'fitbit', at(day, 18, 0, HK), 90, 0);
      const same = summary(day, 'fitbit', at(day, 21, 0, HK), 99, 0);
      const r = await putSummaries(c, [older, same]);
      assert.deepEqual(r.results.map((x) => x.status), ['stale', 'stale']);
      assertWeek(await weekGet(c, week), model([run.model]), week);
      // Newer: applied, the day has it again.
      const newer = summary(day, 'fitbit', at(day, 23, 0, HK), 50, 5);
      assert.equal((await putSummaries(c, [newer])).results[0].status, 'applied');
      assertWeek(await weekGet(c, week), model([run.model], [newer]), week);
      await c.closeAndWait();
    });
  });

  describe('history.get', () => {
    const met = (date) => summary(date, 'fitbit', at(date, 22, 0, HK), 0, 80); // 160 equivalent minutes
    const notMet = (date) => summary(date, 'fitbit', at(date, 22, 0, HK), 100, 0); // 100

    it('returns each week as week.get does, and the streak of met weeks up to the current one', async () => {
      const user = newUser('streak');
      const c = await srv.login(user, 'phone');
      // Met 1, 2 and 3 weeks ago, not 4 weeks ago, met 5 weeks ago; nothing yet this week.
      await putSummaries(c, [met(mondayWeeksAgo(1)), met(addDays(mondayWeeksAgo(2), 6)), met(addDays(mondayWeeksAgo(3), 3)),
        notMet(mondayWeeksAgo(4)), met(mondayWeeksAgo(5))]);
      const h = await c.request({ type: 'history.get' });
      assert.equal(h.type, 'history.get', JSON.stringify(h).slice(0, 300));
      const cur = currentWeek();
      assert.equal(h.current_week, cur);
      assert.equal(h.weeks.length, 12, 'by default the 12 weeks up to the current one');
      assert.deepEqual(h.weeks.map((w) => w.week), weekRange(isoWeek(mondayWeeksAgo(11)), cur));
      assert.equal(h.streak, 3, 'the current week, not yet met, does not break the streak');
      for (const wk of h.weeks.slice(-6)) assert.deepEqual(wk, await weekGet(c, wk.week));
      assert.deepEqual(h.weeks.slice(-6).map((w) => w.aerobic_met), [true, false, true, true, true, false]);

      // Met this week too: it counts.
      const today = localDate(Date.now(), PROGRAMME_OFFSET);
      const r = await putSummaries(c, [summary(today, 'fitbit', Date.now(), 0, 80)]);
      assert.equal(r.results[0].status, 'applied', JSON.stringify(r));
      assert.equal((await c.request({ type: 'history.get' })).streak, 4);

      // An explicit range; the streak does not depend on it.
      const part = await c.request({ type: 'history.get', from_week: isoWeek(mondayWeeksAgo(5)), to_week: isoWeek(mondayWeeksAgo(4)) });
      assert.deepEqual(part.weeks.map((w) => [w.week, w.aerobic_met]), [[isoWeek(mondayWeeksAgo(5)), true], [isoWeek(mondayWeeksAgo(4)), false]]);
      assert.equal(part.streak, 4);
      await c.closeAndWait();
    });

    it('a streak is broken by last week; only this week met is 1; nothing is 0', async () => {
      const u1 = await srv.login(newUser('streak1'), 'phone');
      const today = localDate(Date.now(), PROGRAMME_OFFSET);
      await putSummaries(u1, [summary(today, 'fitbit', Date.now(), 0, 80), met(mondayWeeksAgo(2)), met(mondayWeeksAgo(3))]);
      assert.equal((await u1.request({ type: 'history.get' })).streak, 1);
      const u0 = await srv.login(newUser('streak0'), 'phone');
      assert.equal((await u0.request({ type: 'history.get' })).streak, 0);
      for (const c of [u0, u1]) await c.closeAndWait();
    });

    it('refuses a reversed range, more than 104 weeks, and weeks that do not exist', async () => {
      const c = await srv.login(newUser('histbad'), 'phone');
      const cur = currentWeek();
      assertError(await c.request({ type: 'history.get', from_week: cur, to_week: isoWeek(mondayWeeksAgo(1)) }), 'invalid_value', 'from_week');
      assertError(await c.request({ type: 'history.get', from_week: isoWeek(mondayWeeksAgo(104)) }), 'invalid_value', 'from_week');
      const ok = await c.request({ type: 'history.get', from_week: isoWeek(mondayWeeksAgo(103)) });
      assert.equal(ok.weeks.length, 104);
      assertError(await c.request({ type: 'history.get', to_week: '2026-W54' }), 'invalid_value', 'to_week');
      assertError(await c.request({ type: 'history.get', from_week: 202601 }), 'invalid_type', 'from_week');
      await c.closeAndWait();
    });
  });

  describe('account', () => {
    it('account.export holds the profile, the live sessions with their revs, the summaries and the weeks', async () => {
      const user = newUser('export');
      const c = await srv.login(user, 'phone');
      const mon = mondayWeeksAgo(3);
      const a = session('a', 'running', at(mon, 7, 0, HK), 30, HK, { distance_m: 5000 });
      const b = session('b', 'walking', at(addDays(mon, 6), 23, 30, HK), 60, HK); // Sunday night: two weeks
      const gone = session('gone', 'yoga', at(mon, 18, 0, HK), 45, HK);
      await upload(c, [a.item, b.item, gone.item]);
      await c.request({ type: 'activity.update', client_id: 'a', base_rev: 1, steps: 5100 });
      await c.request({ type: 'activity.delete', client_id: 'gone' });
      const s1 = summary(mon, 'fitbit', at(mon, 22, 0, HK), 40, 10);
      const s2 = summary(addDays(mon, 1), 'fitbit', at(addDays(mon, 1), 22, 0, HK), 20, 0);
      await putSummaries(c, [s1, s2]);
      await c.request({ type: 'summary.delete', date: s2.date, source: 'fitbit' });
      await c.request({ type: 'profile.set', profile: { birth_year: 1980, district: 'sha-tin', display_name: 'Export Me' } });
      const r = await c.request({ type: 'account.export' });
      assert.equal(r.type, 'account.export', JSON.stringify(r).slice(0, 300));
      const ex = r.export;
      assert.equal(ex.user, user);
      assert.ok(Math.abs(Date.parse(ex.exported_at) - Date.now()) < 10000);
      assert.deepEqual(ex.profile, { birth_year: 1980, district: 'sha-tin', display_name: 'Export Me' });
      const byId = Object.fromEntries(ex.activities.map((x) => [x.client_id, x]));
      assert.deepEqual(byId, { a: { ...a.item, steps: 5100, rev: 2 }, b: { ...b.item, rev: 1 } });
      assert.deepEqual(ex.summaries, [s1]);
      const weeks = [isoWeek(mon), isoWeek(addDays(mon, 7))];
      assert.deepEqual(ex.weeks.map((w) => w.week), weeks);
      for (const wk of ex.weeks) {
        assert.deepEqual(wk, await weekGet(c, wk.week));
        assertWeek(wk, model([a.model, b.model], [s1]), wk.week);
      }
      await c.closeAndWait();
    });

    it('account.delete removes every key of the user (SCAN finds none), keeps other users\', and closes every device', async () => {
      const user = newUser('forget');
      const keeper = newUser('keeper');
      const phone = await srv.login(user, 'phone');
      const watch = await srv.login(user, 'watch');
      const k = await srv.login(keeper, 'phone');
      const mon = mondayWeeksAgo(2);
      for (const c of [phone, k]) {
        await upload(c, [session('a', 'running', at(mon, 23, 30, HK), 60, HK).item, session('b', 'walking', at(mon, 9, 0, HK), 30, HK).item]);
        await c.request({ type: 'activity.update', client_id: 'a', base_rev: 1, steps: 10 });
        await c.request({ type: 'activity.delete', client_id: 'b' });
        await putSummaries(c, [summary(mon, 'fitbit', at(mon, 22, 0, HK), 30, 0), summary(addDays(mon, 3), 'fitbit', at(addDays(mon, 3), 22, 0, HK), 30, 0)]);
        await c.request({ type: 'summary.delete', date: mon, source: 'fitbit' });
        await c.request({ type: 'profile.set', profile: { gender: 'female' } });
      }
      const pattern = (u) => `*:u:${u}/*`;
      const before = srv.redisKeys(pattern(user));
      const keeperBefore = srv.redisKeys(pattern(keeper));
      // the member hash (profile and sessions), change log, week, week index (workers/fitsync.lua)
      assert.ok(before.length >= 4, `keys of the user before: ${before}`);
      const layout = (keys, u) => keys.map((x) => x.replace(u, 'U').replace(/\{s\d+\}/, '{s}'));
      assert.deepEqual(layout(keeperBefore, keeper), layout(before, user), 'both users have the same layout');

      assertError(await phone.request({ type: 'account.delete' }), 'missing_field', 'confirm');
      assertError(await phone.request({ type: 'account.delete', confirm: 'yes' }), 'invalid_value', 'confirm');
      assert.deepEqual(srv.redisKeys(pattern(user)), before, 'nothing is deleted without confirm: true');

      const r = await phone.request({ type: 'account.delete', confirm: true });
      assert.equal(r.type, 'account.delete', JSON.stringify(r));
      assert.ok(r.deleted_keys >= before.length, JSON.stringify(r)); // keys, and the user's entries in shared ones
      for (const c of [phone, watch]) {
        await c.next((m) => m.type === 'account.deleted' && m.re === undefined, 3000, 'the account.deleted push');
        const info = await withTimeout(c.closed, 3000, 'the server to close the connection');
        assert.deepEqual(info, { code: 1000, reason: 'account deleted' });
      }
      assert.deepEqual(srv.redisKeys(pattern(user)), [], 'no key of the user is left');
      assert.deepEqual(srv.redisKeys(`*${user}*`), [], 'nor any key that names the user');
      assert.deepEqual(keysHolding(srv, user), [], 'nor any entry for the user in a shared key (boards, names)');
      assert.deepEqual(srv.redisKeys(pattern(keeper)), keeperBefore, 'the other user keeps everything');
      assert.ok(k.isOpen);
      assert.equal((await weekGet(k, isoWeek(mon))).vigorous_min > 0, true);

      // The user may come back, as a new user.
      const back = await srv.login(user, 'phone');
      assert.equal(back.welcome.cursor, '0-0');
      assertWeek(await weekGet(back, isoWeek(mon)), model([]), isoWeek(mon));
      assert.deepEqual((await back.request({ type: 'account.export' })).export.activities, []);
      for (const c of [back, k]) await c.closeAndWait();
    });
  });
});

describe('the change log window (FITSYNC_SYNC_WINDOW_DAYS=1)', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { FITSYNC_SYNC_WINDOW_DAYS: '1', FITSYNC_RATE_MESSAGES_PER_S: '10000', FITSYNC_RATE_BURST: '10000' } });
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it('welcome tells the window; a cursor older than it is resync_required; sync.snapshot gives the state and a fresh cursor', async () => {
    const user = newUser('window');
    const phone = await srv.login(user, 'phone');
    assert.equal(phone.welcome.limits.sync_window_days, 1);
    const now = Date.now();
    const recent = session('recent', 'running', Math.floor((now - 3 * 3600000) / MIN) * MIN, 30, HK);
    await upload(phone, [recent.item]);
    const today = localDate(now, HK);
    const sm = summary(today, 'fitbit', now - 60000, 20, 5);
    await putSummaries(phone, [sm]);
    await phone.request({ type: 'profile.set', profile: { birth_year: 2000 } });

    const old = `${Date.now() - 2 * DAY}-0`;
    const r = await phone.request({ type: 'sync.pull', cursor: old });
    assertError(r, 'resync_required', 'cursor');
    assert.equal(r.retryable, undefined);

    const snap = await phone.request({ type: 'sync.snapshot' });
    assert.equal(snap.type, 'sync.snapshot', JSON.stringify(snap));
    const head = (await pullAll(phone, '0-0')).cursor;
    assert.equal(snap.cursor, head, 'the snapshot is consistent with the newest change');
    assert.equal(snap.window_days, 1);
    assert.deepEqual(snap.profile, { birth_year: 2000 });
    assert.deepEqual(snap.activities, [{ ...recent.item, rev: 1 }]);
    assert.deepEqual(snap.summaries, [sm]);

    // From the snapshot's cursor on, sync.pull works and returns exactly what came after.
    const empty = await phone.request({ type: 'sync.pull', cursor: snap.cursor });
    assert.deepEqual([empty.changes, empty.cursor, empty.more], [[], snap.cursor, false]);
    const watch = await srv.login(user, 'watch');
    const d = await watch.request({ type: 'activity.delete', client_id: 'recent' });
    const after = await phone.request({ type: 'sync.pull', cursor: snap.cursor });
    assert.deepEqual(after.changes.map((c) => [c.kind, c.op, c.id, c.cursor, c.device_id]), [['activity', 'delete', 'recent', d.cursor, 'watch']]);
    for (const c of [phone, watch]) await c.closeAndWait();
  });

  it('a cursor from before an entry the log has already dropped is resync_required, even "0-0"', async () => {
    const user = newUser('trimmed');
    // An entry two days old, as if written then.
    const log = userKey(user, 'log');
    const oldId = `${Date.now() - 2 * DAY}-0`;
    srv.redisCli(['XADD', log, oldId, 'k', 'profile', 'op', 'upsert', 'id', 'profile', 'rev', '1', 'dev', 'phone', 'doc', '{}']);
    const c = await srv.login(user, 'phone');
    assert.equal(c.welcome.cursor, oldId);
    await c.request({ type: 'profile.set', profile: { gender: 'male' } }); // appending trims the old entry
    assert.equal(srv.redisCli(['XLEN', log]), '1');
    assertError(await c.request({ type: 'sync.pull', cursor: '0-0' }), 'resync_required', 'cursor');
    assertError(await c.request({ type: 'sync.pull', cursor: oldId }), 'resync_required', 'cursor');
    const snap = await c.request({ type: 'sync.snapshot' });
    const r = await c.request({ type: 'sync.pull', cursor: snap.cursor });
    assert.deepEqual([r.changes, r.more], [[], false]);
    await c.closeAndWait();
  });
});

describe('the rate limit (FITSYNC_RATE_MESSAGES_PER_S=5, FITSYNC_RATE_BURST=5)', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { FITSYNC_RATE_MESSAGES_PER_S: '5', FITSYNC_RATE_BURST: '5' } });
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it('10 messages at once: the excess is rate_limited with retry_after_ms and not applied; after that wait the same message succeeds', async () => {
    const user = newUser('rate');
    const c = await srv.login(user, 'phone');
    assert.deepEqual([c.welcome.limits.messages_per_s, c.welcome.limits.burst], [5, 5]);
    await sleep(1100); // the bucket is full again after hello
    const mon = mondayWeeksAgo(2);
    const sessions = [];
    for (let i = 0; i < 10; i++) sessions.push(session(`r${i}`, 'walking', at(mon, 6, 0, HK) + i * 60 * MIN, 10, HK));
    const msgs = sessions.map((s, i) => ({ type: 'activity.upload', id: `burst-${i}`, activities: [s.item] }));
    const replies = await withTimeout(Promise.all(msgs.map((m) => c.pipeline(m))), 10000, 'the burst replies');
    const limited = replies.filter((r) => r.type === 'error');
    const passed = replies.filter((r) => r.type === 'activity.upload');
    assert.ok(limited.length >= 4 && passed.length >= 5, `passed ${passed.length}, limited ${limited.length}`);
    for (const r of limited) {
      assertError(r, 'rate_limited');
      assert.equal(r.retryable, true);
      assert.ok(Number.isInteger(r.retry_after_ms) && r.retry_after_ms > 0 && r.retry_after_ms <= 1000, JSON.stringify(r));
    }
    assert.ok(passed.every((r) => r.results[0].status === 'created'));
    // Nothing of a limited message was applied.
    await sleep(1100);
    const ok = sessions.filter((s, i) => replies[i].type === 'activity.upload').map((s) => s.model);
    assertWeek(await weekGet(c, isoWeek(mon)), model(ok), isoWeek(mon));
    // Empty the bucket again (the message goes right behind the flood, in the same
    // write), then wait as told and send the same message again.
    const first = limited[0];
    const i = Number(first.re.split('-')[1]);
    const flood = [];
    for (let k = 0; k < 8; k++) flood.push(c.pipeline({ type: 'week.get', id: `flood-${k}` }));
    let again = await withTimeout(c.pipeline({ ...msgs[i], id: `again-${i}` }), 5000, 'the reply to the retry');
    await Promise.all(flood);
    assertError(again, 'rate_limited');
    await sleep(again.retry_after_ms);
    again = await c.request({ ...msgs[i], id: undefined });
    assert.equal(again.type, 'activity.upload', JSON.stringify(again));
    assert.equal(again.results[0].status, 'created');
    await sleep(400);
    assertWeek(await weekGet(c, isoWeek(mon)), model([...ok, sessions[i].model]), isoWeek(mon));
    await c.closeAndWait();
  });
});

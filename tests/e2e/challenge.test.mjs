// challenge.test.mjs: virtual challenges end to end (event.create with kind
// "virtual", challenge.join, progress, the "badge" push, the challenge boards
// "challenge:<id>:all" and "challenge:<id>:teams"), over real WebSockets
// against real fitsyncd processes and their embedded Redis.
//
// Servers (each on a free port in a fresh temporary directory; the rate limit
// is lifted, these tests send bursts):
//   main     defaults (one shard, +08:00): validation, joining, every metric,
//            edits and deletes, teams and caps, badges, live team pushes;
//   s1, s4   FITSYNC_SHARDS=1 and =4: the same members, challenge and data
//            give the same challenge boards.
//
// Expected progress is computed here, independently of the server, from what
// the test uploaded: every session sits on whole minutes at +08:00 (the
// programme zone), and a member's day is modelled minute by minute (each
// minute goes to the highest intensity of the sessions covering it, so
// overlaps count once), then combined with the day's summaries by taking the
// larger figure per intensity, as week.get does. Then
//   equivalent_min = sum over the window's days of moderate + 2 x vigorous,
//   active_days    = the window's days with any moderate or vigorous minute,
//   distance_m     = distance of live sessions of the listed types whose
//                    start lies in [from 00:00, to 24:00) at +08:00.
// The window lies 4..10 days back, so nothing is in the future and nothing
// is older than max_age_weeks; each test has its own challenge and members.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/challenge.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, sleep, MIN, rfc3339, localDate, addDays, at, onlyOneRedis } from './lib.mjs';

const OFF = 8 * 60; // config/fitsync.json "timezone": "+08:00"
const FAST = { FITSYNC_RATE_MESSAGES_PER_S: '100000', FITSYNC_RATE_BURST: '100000' };

const today = () => localDate(Date.now(), OFF);
/* The challenge window used throughout: 7 local days, 10..4 days back. */
const FROM = addDays(today(), -10);
const TO = addDays(today(), -4);

let seq = 0;
const uniq = (name) => `${name}-${process.pid % 100000}-${++seq}`;

function assertError(reply, code, field) {
  assert.equal(reply.type, 'error', JSON.stringify(reply));
  assert.equal(reply.code, code, JSON.stringify(reply));
  assert.equal(reply.field, field, JSON.stringify(reply));
  assert.ok(typeof reply.message === 'string' && reply.message.length > 0, JSON.stringify(reply));
}

/* ------------------------------------------------------------------ */
/* hosts and challenges                                                */

async function hostOf(srv, event) {
  return srv.login(uniq('host'), 'desk', { role: 'host', event });
}

/* Creates a virtual challenge (defaults: equivalent_min over FROM..TO, goal 1000); returns its definition. */
async function createChallenge(srv, fields = {}) {
  const event = fields.event || uniq('ch');
  const h = await hostOf(srv, event);
  const msg = {
    type: 'event.create',
    event,
    name: `Challenge ${event}`,
    kind: 'virtual',
    from: FROM,
    to: TO,
    metric: 'equivalent_min',
    goal: 1000,
    ...fields,
  };
  const r = await h.request(msg);
  await h.closeAndWait();
  assert.equal(r.type, 'event.create', JSON.stringify(r));
  assert.equal(r.status, 'created', JSON.stringify(r));
  assert.equal(r.definition.kind, 'virtual');
  return { ...msg, event };
}

/* ------------------------------------------------------------------ */
/* members and their model                                             */

const LEVEL = { light: 1, moderate: 2, vigorous: 3 };

class Member {
  constructor(srv, sub, name, clients) {
    this.srv = srv;
    this.sub = sub;
    this.name = name;
    this.clients = clients;
    this.c = clients[0];
    this.sessions = new Map(); // client_id -> {type, intensity, start, min, distance, rev, live}
    this.sums = new Map(); // `${date}|${source}` -> {date, mo, vi}
    this.recorded = 0;
  }

  static async login(srv, name, devices = ['phone']) {
    const sub = uniq(name.toLowerCase());
    const clients = [];
    for (const d of devices) clients.push(await srv.login(sub, d));
    const r = await clients[0].request({ type: 'profile.set', profile: { display_name: name } });
    assert.equal(r.type, 'profile.set', JSON.stringify(r));
    return new Member(srv, sub, name, clients);
  }

  async close() {
    for (const c of this.clients) await c.closeAndWait();
  }

  /* A session item: date, local hh:mm at +08:00, minutes, intensity, optional type and distance. */
  item(cid, s) {
    const it = {
      client_id: cid,
      type: s.type,
      intensity: s.intensity,
      start: rfc3339(s.start, OFF),
      duration_s: s.min * 60,
    };
    if (s.distance !== undefined) it.distance_m = s.distance;
    return it;
  }

  /* Uploads sessions [{date, hh, mm, min, intensity='moderate', type='walking', distance?}]; returns their client ids. */
  async upload(...specs) {
    const items = [];
    const ids = [];
    for (const sp of specs) {
      const cid = `${this.sub}-s${this.sessions.size + items.length + 1}`;
      const s = {
        type: sp.type || 'walking',
        intensity: sp.intensity || 'moderate',
        start: at(sp.date, sp.hh ?? 10, sp.mm ?? 0, OFF),
        min: sp.min,
        distance: sp.distance,
        rev: 1,
        live: true,
      };
      items.push(this.item(cid, s));
      ids.push([cid, s]);
    }
    const r = await this.c.request({ type: 'activity.upload', activities: items });
    assert.equal(r.type, 'activity.upload', JSON.stringify(r));
    for (const res of r.results) assert.equal(res.status, 'created', JSON.stringify(res));
    for (const [cid, s] of ids) this.sessions.set(cid, s);
    return ids.map(([cid]) => cid);
  }

  /* activity.update; changes: {date, hh, mm} (new start), min, distance (null removes), type. */
  async update(cid, ch) {
    const s = this.sessions.get(cid);
    const msg = { type: 'activity.update', client_id: cid, base_rev: s.rev };
    const next = { ...s };
    if (ch.date) {
      next.start = at(ch.date, ch.hh ?? 10, ch.mm ?? 0, OFF);
      msg.start = rfc3339(next.start, OFF);
    }
    if (ch.min !== undefined) {
      next.min = ch.min;
      msg.duration_s = ch.min * 60;
    }
    if (ch.distance !== undefined) {
      next.distance = ch.distance ?? undefined;
      msg.distance_m = ch.distance;
    }
    if (ch.type) {
      next.type = ch.type;
      msg.activity_type = ch.type;
    }
    const r = await this.c.request(msg);
    assert.equal(r.type, 'activity.update', JSON.stringify(r));
    assert.equal(r.status, 'updated', JSON.stringify(r));
    next.rev = r.rev;
    this.sessions.set(cid, next);
    return r;
  }

  async remove(cid) {
    const s = this.sessions.get(cid);
    const r = await this.c.request({ type: 'activity.delete', client_id: cid, base_rev: s.rev });
    assert.equal(r.type, 'activity.delete', JSON.stringify(r));
    assert.equal(r.status, 'deleted', JSON.stringify(r));
    s.live = false;
    s.rev = r.rev;
    return r;
  }

  /* A daily summary of one source (each upload newer than the last). */
  async summary(date, mo, vi, li = 0, source = 'fitbit') {
    this.recorded += 1;
    const rec = at(date, 23, 0, OFF) + this.recorded * 1000;
    const r = await this.c.request({
      type: 'summary.upload',
      summaries: [
        {
          date,
          utc_offset: '+08:00',
          source,
          recorded_at: rfc3339(rec, OFF),
          moderate_min: mo,
          vigorous_min: vi,
          light_min: li,
        },
      ],
    });
    assert.equal(r.type, 'summary.upload', JSON.stringify(r));
    assert.equal(r.results[0].status, 'applied', JSON.stringify(r));
    this.sums.set(`${date}|${source}`, { date, mo, vi });
  }

  async summaryDelete(date, source = 'fitbit') {
    const r = await this.c.request({ type: 'summary.delete', date, source });
    assert.equal(r.status, 'deleted', JSON.stringify(r));
    this.sums.delete(`${date}|${source}`);
  }

  /* Local day -> {mo, vi}: minute-by-minute union of the sessions, max with the summaries. */
  days() {
    const grid = new Map(); // date -> Map(minute of day -> level)
    for (const s of this.sessions.values()) {
      if (!s.live) continue;
      for (let k = 0; k < s.min; k++) {
        const t = s.start + k * MIN;
        const date = localDate(t, OFF);
        const minute = Math.round((t + OFF * MIN - Date.parse(`${date}T00:00:00Z`)) / MIN);
        if (!grid.has(date)) grid.set(date, new Map());
        const g = grid.get(date);
        g.set(minute, Math.max(g.get(minute) || 0, LEVEL[s.intensity]));
      }
    }
    const out = new Map();
    for (const [date, g] of grid) {
      let mo = 0,
        vi = 0;
      for (const lvl of g.values()) {
        if (lvl === 2) mo++;
        if (lvl === 3) vi++;
      }
      out.set(date, { mo, vi });
    }
    for (const { date, mo, vi } of this.sums.values()) {
      const d = out.get(date) || { mo: 0, vi: 0 };
      out.set(date, { mo: Math.max(d.mo, mo), vi: Math.max(d.vi, vi) });
    }
    return out;
  }

  /* The member's progress in challenge def, computed here. */
  progress(def) {
    if (def.metric === 'distance_m') {
      const lo = at(def.from, 0, 0, OFF);
      const hi = at(addDays(def.to, 1), 0, 0, OFF);
      let total = 0;
      for (const s of this.sessions.values())
        if (s.live && def.activity_types.includes(s.type) && s.start >= lo && s.start < hi)
          total += s.distance || 0;
      return total;
    }
    let total = 0;
    for (const [date, d] of this.days()) {
      if (date < def.from || date > def.to) continue;
      if (def.metric === 'active_days') total += d.mo + d.vi > 0 ? 1 : 0;
      else total += d.mo + 2 * d.vi;
    }
    return total;
  }

  join(def, team) {
    const msg = { type: 'challenge.join', event: def.event };
    if (team) msg.team = team;
    return this.c.request(msg);
  }

  /* The server's progress (a second join answers duplicate with it) equals the model's. */
  async check(def, what = '') {
    const r = await this.join(def, this.team);
    assert.equal(r.type, 'challenge.join', JSON.stringify(r));
    assert.equal(r.status, 'duplicate', JSON.stringify(r));
    assert.equal(r.progress, this.progress(def), `${this.name} ${what}: ${JSON.stringify(r)}`);
    return r;
  }
}

/* Expected boards. */
function expectedAll(members, def) {
  return members
    .map((m) => ({ name: m.name, p: m.progress(def) }))
    .filter((e) => e.p > 0)
    .sort((a, b) => b.p - a.p)
    .map((e, i) => ({ rank: i + 1, name: e.name, score: Math.floor(e.p) }));
}
function teamTotals(members, def) {
  const cap = def.team_cap || 0;
  const tot = new Map();
  for (const m of members) {
    if (!m.team) continue;
    const p = m.progress(def);
    tot.set(m.team, (tot.get(m.team) || 0) + (cap > 0 ? Math.min(p, cap) : p));
  }
  return tot;
}
function expectedTeams(members, def) {
  return [...teamTotals(members, def)]
    .filter(([, s]) => s > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([team, s], i) => ({ rank: i + 1, name: team, score: Math.floor(s) }));
}

async function boardGet(c, board, extra = {}) {
  const r = await c.request({ type: 'leaderboard.get', board, ...extra });
  assert.equal(r.type, 'leaderboard.get', JSON.stringify(r));
  return r;
}

/* Joins and checks the reply; sets m.team. */
async function join(m, def, team) {
  const r = await m.join(def, team);
  assert.equal(r.type, 'challenge.join', JSON.stringify(r));
  assert.equal(r.status, 'joined', JSON.stringify(r));
  assert.equal(r.event, def.event);
  assert.equal(r.progress, m.progress(def), `${m.name} joining: ${JSON.stringify(r)}`);
  if (team) assert.equal(r.team, team);
  m.team = team;
  return r;
}

/* ------------------------------------------------------------------ */

describe('virtual challenges on one process', () => {
  let srv;
  const members = [];
  const login = async (name, devices) => {
    const m = await Member.login(srv, name, devices);
    members.push(m);
    return m;
  };
  before(async () => {
    srv = await startServer({ env: FAST });
  });
  after(async () => {
    for (const m of members) await m.close().catch(() => {});
    if (srv) await srv.stop();
  });

  it('event.create refuses bad fields, naming the field', async () => {
    const event = uniq('bad');
    const h = await hostOf(srv, event);
    const base = { type: 'event.create', event, name: 'Bad', kind: 'virtual', from: FROM, to: TO, metric: 'equivalent_min', goal: 100 };
    const without = (k) => {
      const m = { ...base };
      delete m[k];
      return m;
    };
    const cases = [
      [{ ...base, metric: 'steps' }, 'invalid_value', 'metric'],
      [without('metric'), 'missing_field', 'metric'],
      [{ ...base, goal: 0 }, 'invalid_value', 'goal'],
      [{ ...base, goal: -5 }, 'invalid_value', 'goal'],
      [{ ...base, goal: '100' }, 'invalid_value', 'goal'],
      [without('goal'), 'missing_field', 'goal'],
      [{ ...base, from: '2026-02-30' }, 'invalid_value', 'from'],
      [{ ...base, from: '20261101' }, 'invalid_value', 'from'],
      [without('from'), 'missing_field', 'from'],
      [{ ...base, to: addDays(FROM, -1) }, 'invalid_value', 'to'],
      [{ ...base, to: addDays(FROM, 400) }, 'invalid_value', 'to'],
      [without('to'), 'missing_field', 'to'],
      [{ ...base, activity_types: ['running'] }, 'invalid_value', 'activity_types'],
      [{ ...base, metric: 'active_days', activity_types: ['running'] }, 'invalid_value', 'activity_types'],
      [{ ...base, metric: 'distance_m' }, 'missing_field', 'activity_types'],
      [{ ...base, metric: 'distance_m', activity_types: [] }, 'invalid_value', 'activity_types'],
      [{ ...base, metric: 'distance_m', activity_types: ['bad type!'] }, 'invalid_value', 'activity_types'],
      [{ ...base, team_cap: -1 }, 'invalid_value', 'team_cap'],
      [{ ...base, teams: [{ id: 'Red Team', name: 'Red' }] }, 'invalid_value', 'teams'],
      [{ ...base, teams: [{ id: 'red' }] }, 'invalid_value', 'teams'],
      [{ ...base, kind: 'marathon' }, 'invalid_value', 'kind'],
    ];
    for (const [msg, code, field] of cases) assertError(await h.request(msg), code, field);
    // Nothing was created by the refusals.
    assertError(await h.request({ type: 'event.get', event }), 'not_found', 'event');

    // A member may not create one; the host of another event neither.
    const m = await srv.login(uniq('nohost'), 'phone');
    assertError(await m.request(base), 'forbidden', 'event');
    const other = await hostOf(srv, uniq('other'));
    assertError(await other.request(base), 'forbidden', 'event');

    // A good one: the definition is echoed (team_cap 0 = none, public by default).
    const ok = await h.request({ ...base, metric: 'distance_m', activity_types: ['running', 'cycling'], goal: 21097.5 });
    assert.equal(ok.status, 'created', JSON.stringify(ok));
    assert.deepEqual(ok.definition, {
      id: event,
      name: 'Bad',
      kind: 'virtual',
      from: FROM,
      to: TO,
      metric: 'distance_m',
      goal: 21097.5,
      public: true,
      activity_types: ['running', 'cycling'],
      team_cap: 0,
    });
    const g = await h.request({ type: 'event.get', event });
    assert.equal(g.event.metric, 'distance_m', JSON.stringify(g));
    for (const c of [h, m, other]) await c.closeAndWait();
  });

  it('challenge.join: duplicate, unknown team, unknown event, timed relay', async () => {
    const def = await createChallenge(srv, { teams: [{ id: 'red', name: 'Red' }, { id: 'blue', name: 'Blue' }] });
    const plain = await createChallenge(srv);
    const ann = await login('Ann');
    await join(ann, def, 'red');
    const again = await ann.join(def, 'red');
    assert.equal(again.status, 'duplicate', JSON.stringify(again));
    assert.equal(again.progress, 0);

    const bob = await login('Bob');
    assertError(await bob.join(def, 'green'), 'invalid_value', 'team');
    assertError(await bob.join(plain, 'red'), 'invalid_value', 'team'); // a challenge without teams
    assertError(await bob.c.request({ type: 'challenge.join', event: def.event, team: 'Not A Slug' }), 'invalid_value', 'team');
    assertError(await bob.c.request({ type: 'challenge.join', event: uniq('nothing') }), 'not_found', 'event');
    assertError(await bob.c.request({ type: 'challenge.join' }), 'missing_field', 'event');

    const relay = uniq('relay');
    const h = await hostOf(srv, relay);
    const cr = await h.request({
      type: 'event.create',
      event: relay,
      name: 'Relay',
      kind: 'timed_relay',
      starts_at: rfc3339(Date.now() + 3600000, OFF),
      duration_s: 3600,
      lap_m: 400,
      categories: [{ id: 'open', name: 'Open', group: 'adult' }],
    });
    assert.equal(cr.status, 'created', JSON.stringify(cr));
    assertError(await bob.c.request({ type: 'challenge.join', event: relay }), 'invalid_value', 'event');
    await h.closeAndWait();

    // Bob was refused every time: he is on no board; Ann (no data) is on none either.
    const all = await boardGet(bob.c, `challenge:${def.event}:all`);
    assert.deepEqual([all.size, all.entries], [0, []]);
    await join(bob, def, 'blue');
  });

  it('equivalent_min: retroactive join, window edges at +08:00, union of overlaps, max with summaries', async () => {
    const def = await createChallenge(srv);
    const early = await login('Early'); // uploads, then joins
    const late = await login('Late'); // joins, then uploads
    await join(late, def);
    const d1 = addDays(FROM, 1),
      d2 = addDays(FROM, 2),
      d3 = addDays(FROM, 3);
    const data = [
      { date: addDays(FROM, -1), hh: 9, min: 50 }, // the day before: out
      { date: addDays(FROM, -1), hh: 23, mm: 30, min: 60 }, // 23:30..00:30 across from's midnight: 30 in
      { date: FROM, hh: 0, mm: 0, min: 20, intensity: 'vigorous', type: 'running' }, // overlaps the last 20 of the one above
      { date: d1, hh: 10, min: 60 }, // 10:00-11:00 moderate
      { date: d1, hh: 10, mm: 30, min: 60, intensity: 'vigorous', type: 'running' }, // 10:30-11:30 vigorous over it
      { date: d1, hh: 10, mm: 45, min: 15 }, // entirely covered
      { date: d2, hh: 7, min: 30 }, // 30 moderate, but the summary says 45/10
      { date: d3, hh: 7, min: 40, intensity: 'vigorous', type: 'running' }, // 40 vigorous; summary says 20/5
      { date: d3, hh: 12, min: 90, intensity: 'light' }, // light: nothing
      { date: TO, hh: 23, mm: 30, min: 60 }, // 23:30 on the last day to 00:30 after: 30 in
      { date: addDays(TO, 1), hh: 8, min: 45 }, // the day after: out
    ];
    for (const m of [early, late]) {
      await m.upload(...data);
      await m.summary(d2, 45, 10, 100);
      await m.summary(d3, 20, 5);
      await m.summary(addDays(TO, 1), 200, 100); // outside
    }
    // The model, spelled out: from = 10 moderate (00:20..00:30) + 20 vigorous; d1 = 30 mod + 60 vig;
    // d2 = max(30, 45) mod + 10 vig; d3 = 20 mod + 40 vig; to = 30 mod.
    const want = 10 + 40 + (30 + 120) + (45 + 20) + (20 + 80) + 30;
    assert.equal(early.progress(def), want);
    await late.check(def, 'joined before the uploads');
    await join(early, def); // joined after: counted at once
    assert.equal((await early.check(def)).progress, want);

    // Board: both have the same progress; names and floor(progress).
    const all = await boardGet(early.c, `challenge:${def.event}:all`);
    assert.equal(all.size, 2);
    assert.deepEqual(all.entries.map((e) => e.score), [want, want]);
    assert.deepEqual(all.entries.map((e) => e.name).sort(), ['Early', 'Late']);
    assert.deepEqual(all.entries.map((e) => e.rank), [1, 2]);

    // An edit moving the d1 vigorous session out of the window un-counts it.
    const vig = [...late.sessions.keys()][4];
    await late.update(vig, { date: addDays(TO, 1), hh: 15 });
    await late.check(def, 'after moving a session out');
    assert.equal(late.progress(def), want - 90); // d1: 60 moderate instead of 30 + 60 x 2
    // ...and moving it back in counts it again.
    await late.update(vig, { date: d3, hh: 18 });
    await late.check(def, 'after moving a session in');
    // A shorter session counts less.
    const d1mod = [...late.sessions.keys()][3];
    await late.update(d1mod, { min: 30 });
    await late.check(def, 'after shortening');
    // Deletes un-count: a session, then a summary (d2 falls back to the session's 30).
    await late.remove(vig);
    await late.check(def, 'after a delete');
    await late.summaryDelete(d2);
    await late.check(def, 'after a summary delete');
    // A newer summary raises the day again.
    await late.summary(d3, 200, 0);
    await late.check(def, 'after a newer summary');

    const all2 = await boardGet(early.c, `challenge:${def.event}:all`);
    assert.deepEqual(all2.entries, expectedAll([early, late], def));
    // Everything deleted in the window: off the board.
    for (const cid of late.sessions.keys()) if (late.sessions.get(cid).live) await late.remove(cid);
    for (const d of [d3, addDays(TO, 1)]) await late.summaryDelete(d);
    assert.equal(late.progress(def), 0);
    await late.check(def, 'after deleting everything');
    const all3 = await boardGet(early.c, `challenge:${def.event}:all`);
    assert.deepEqual([all3.size, all3.entries], [1, [{ rank: 1, name: 'Early', score: want }]]);
  });

  it('active_days: days with any moderate or vigorous minute, from sessions or summaries', async () => {
    const def = await createChallenge(srv, { metric: 'active_days', goal: 5 });
    const m = await login('Days');
    const [a] = await m.upload(
      { date: FROM, min: 10 },
      { date: FROM, hh: 18, min: 10, intensity: 'vigorous', type: 'running' }, // same day
      { date: addDays(FROM, 1), min: 60, intensity: 'light' }, // light only: not active
      { date: addDays(FROM, 2), hh: 23, mm: 55, min: 10 }, // 5 min on day 2, 5 on day 3
      { date: TO, min: 1, intensity: 'vigorous', type: 'running' },
      { date: addDays(FROM, -1), min: 30 }, // outside
      { date: addDays(TO, 1), min: 30 } // outside
    );
    await m.summary(addDays(FROM, 4), 12, 0); // active by its summary
    await m.summary(addDays(FROM, 5), 0, 0, 300); // light only
    await join(m, def);
    assert.equal(m.progress(def), 5); // from, from+2, from+3, from+4, to
    await m.check(def);
    await m.remove(a); // the other session keeps the day active
    await m.check(def, 'after deleting one of two sessions of a day');
    assert.equal(m.progress(def), 5);
    await m.summaryDelete(addDays(FROM, 4));
    await m.check(def, 'after deleting the summary');
    assert.equal(m.progress(def), 4);
    const b = await boardGet(m.c, `challenge:${def.event}:all`);
    assert.deepEqual(b.entries, [{ rank: 1, name: 'Days', score: 4 }]);
  });

  it('distance_m: only the listed types, by start inside the window', async () => {
    const def = await createChallenge(srv, { metric: 'distance_m', activity_types: ['running', 'cycling'], goal: 100000 });
    const m = await login('Dist');
    await join(m, def);
    const ids = await m.upload(
      { date: FROM, min: 30, type: 'running', intensity: 'vigorous', distance: 5000 },
      { date: addDays(FROM, 1), min: 60, type: 'cycling', distance: 12000.5 },
      { date: addDays(FROM, 1), hh: 14, min: 40, type: 'walking', distance: 3000 }, // not listed
      { date: addDays(FROM, 2), hh: 6, min: 30, type: 'running', intensity: 'vigorous' }, // no distance
      { date: addDays(FROM, -1), hh: 23, mm: 50, min: 30, type: 'running', distance: 4000 }, // starts before: out
      { date: TO, hh: 23, mm: 50, min: 30, type: 'running', distance: 4200 }, // starts on the last day: in
      { date: addDays(TO, 1), hh: 0, mm: 0, min: 30, type: 'running', distance: 7000 } // starts after: out
    );
    assert.equal(m.progress(def), 5000 + 12000.5 + 4200);
    await m.check(def);
    await m.update(ids[0], { distance: 6500 });
    await m.check(def, 'after a distance edit');
    await m.update(ids[2], { type: 'running' }); // the walk becomes a run: counts
    await m.check(def, 'after a type edit');
    await m.update(ids[1], { type: 'walking' }); // the ride becomes a walk: un-counts
    await m.check(def, 'after a type edit away');
    await m.update(ids[6], { date: addDays(FROM, 3) }); // moved into the window
    await m.check(def, 'after moving a run in');
    await m.remove(ids[5]);
    await m.check(def, 'after a delete');
    assert.equal(m.progress(def), 6500 + 3000 + 7000);
    const b = await boardGet(m.c, `challenge:${def.event}:all`);
    assert.deepEqual(b.entries, [{ rank: 1, name: 'Dist', score: 16500 }]);
  });

  it('teams: team_cap limits what one member adds to the team, not their own progress; live pushes', async () => {
    const def = await createChallenge(srv, {
      teams: [{ id: 'red', name: 'Red' }, { id: 'blue', name: 'Blue' }, { id: 'green', name: 'Green' }],
      team_cap: 100,
    });
    const teamsBoard = `challenge:${def.event}:teams`;
    const allBoard = `challenge:${def.event}:all`;
    const watcher = await login('Watcher');
    const sub = await watcher.c.request({ type: 'leaderboard.subscribe', board: teamsBoard, limit: 10 });
    assert.equal(sub.type, 'leaderboard.subscribe', JSON.stringify(sub));
    assert.deepEqual([sub.size, sub.entries], [0, []]);
    const subAll = await watcher.c.request({ type: 'leaderboard.subscribe', board: allBoard, limit: 10 });
    assert.equal(subAll.type, 'leaderboard.subscribe', JSON.stringify(subAll));

    const strong = await login('Strong');
    const r2 = await login('Rae');
    const b1 = await login('Bea');
    const b2 = await login('Bo');
    const solo = await login('Solo'); // joins without a team: on "all", not on "teams"
    await join(strong, def, 'red');
    await join(r2, def, 'red');
    await join(b1, def, 'blue');
    await join(b2, def, 'blue');
    await join(solo, def);
    const everyone = [strong, r2, b1, b2, solo];
    const pushed = (board, want, what) =>
      watcher.c.next(
        (m) => m.type === 'leaderboard' && m.board === board && JSON.stringify(m.entries) === JSON.stringify(want),
        5000,
        `a ${board} push ${what}: ${JSON.stringify(want)}`
      );

    await strong.upload({ date: FROM, min: 150, intensity: 'vigorous', type: 'running' }); // 300
    await pushed(teamsBoard, [{ rank: 1, name: 'red', score: 100 }], 'after the strong member');
    await b1.upload({ date: addDays(FROM, 1), min: 80 });
    await pushed(teamsBoard, expectedTeams(everyone, def), 'after Bea');
    await b2.upload({ date: addDays(FROM, 2), min: 50 });
    await r2.upload({ date: addDays(FROM, 3), min: 25 });
    await solo.upload({ date: addDays(FROM, 3), min: 500 });
    const wantTeams = expectedTeams(everyone, def);
    assert.deepEqual(wantTeams, [
      { rank: 1, name: 'blue', score: 130 },
      { rank: 2, name: 'red', score: 125 },
    ]);
    await pushed(teamsBoard, wantTeams, 'after everyone');
    await pushed(allBoard, expectedAll(everyone, def), 'after everyone');
    assert.equal((await strong.check(def)).progress, 300); // not capped
    assert.deepEqual((await boardGet(watcher.c, teamsBoard)).entries, wantTeams);
    const all = await boardGet(watcher.c, allBoard);
    assert.deepEqual(all.entries, expectedAll(everyone, def));
    assert.equal(all.entries[1].name, 'Strong');
    assert.equal(all.entries[1].score, 300);

    // Below the cap a member's edits move the team; above it they do not.
    const [s1] = strong.sessions.keys();
    await strong.update(s1, { min: 100 }); // 200: still capped at 100
    assert.ok(await watcher.c.quiet((m) => m.type === 'leaderboard' && m.board === teamsBoard, 800), 'no teams push');
    await strong.update(s1, { min: 30 }); // 60: red = 60 + 25
    await pushed(teamsBoard, expectedTeams(everyone, def), 'after the strong member dropped under the cap');
    assert.deepEqual(expectedTeams(everyone, def).map((e) => e.score), [130, 85]);
    await r2.remove([...r2.sessions.keys()][0]);
    await pushed(teamsBoard, expectedTeams(everyone, def), 'after a delete');
    assert.deepEqual((await boardGet(watcher.c, teamsBoard)).entries, expectedTeams(everyone, def));
  });

  it('badge: pushed once to every device when the goal is first reached, not again after dropping and re-reaching', async () => {
    const def = await createChallenge(srv, { goal: 60, name: 'Sixty' });
    const m = await login('Badger', ['phone', 'watch']);
    const other = await login('Other');
    const isBadge = (x) => x.type === 'badge' && x.event === def.event;
    await join(m, def);
    await m.upload({ date: FROM, min: 40 });
    assert.equal((await m.check(def)).achieved_at, undefined);
    assert.ok(await m.c.quiet(isBadge, 300), 'no badge below the goal');
    const t0 = Date.now();
    const [cid] = await m.upload({ date: addDays(FROM, 1), min: 30 });
    const badges = await Promise.all(m.clients.map((c) => c.next(isBadge, 5000, 'the badge push')));
    for (const b of badges) {
      assert.deepEqual({ ...b, at_ms: 0 }, { type: 'badge', event: def.event, name: 'Sixty', metric: 'equivalent_min', goal: 60, progress: 70, at_ms: 0 });
      assert.ok(b.at_ms >= t0 - 1000 && b.at_ms <= Date.now() + 1000, JSON.stringify(b));
    }
    assert.equal(badges[0].at_ms, badges[1].at_ms);
    const j = await m.check(def);
    assert.equal(Date.parse(j.achieved_at), badges[0].at_ms, JSON.stringify(j));

    // Drop below and reach it again: the achievement stays, no second badge.
    await m.remove(cid);
    assert.equal((await m.check(def)).progress, 40);
    await m.upload({ date: addDays(FROM, 2), min: 30, intensity: 'vigorous', type: 'running' });
    assert.equal((await m.check(def)).progress, 100);
    for (const c of m.clients) assert.ok(await c.quiet(isBadge, 1000), 'no second badge');
    assert.equal((await m.check(def)).achieved_at, j.achieved_at);
    // Nobody else got it.
    assert.equal(other.c.pushes.filter((x) => x.type === 'badge').length, 0);

    // Data already past the goal: the badge comes with the join.
    const def2 = await createChallenge(srv, { goal: 50, name: 'Fifty' });
    const jr = await m.join(def2);
    assert.equal(jr.status, 'joined', JSON.stringify(jr));
    assert.equal(jr.progress, 100);
    assert.ok(jr.achieved_at, JSON.stringify(jr));
    const b2 = await Promise.all(m.clients.map((c) => c.next((x) => x.type === 'badge' && x.event === def2.event, 5000, 'the join badge')));
    for (const b of b2) assert.equal(b.progress, 100);
  });

  it('a second join answers duplicate with the team joined first, whatever team it names', async () => {
    const def = await createChallenge(srv, { teams: [{ id: 'red', name: 'Red' }, { id: 'blue', name: 'Blue' }] });
    const m = await login('Twice');
    await join(m, def, 'red');
    await m.upload({ date: FROM, min: 15 });
    for (const team of ['blue', undefined, 'red']) {
      const r = await m.join(def, team);
      assert.equal(r.status, 'duplicate', JSON.stringify(r));
      assert.equal(r.progress, 15);
      assert.equal(r.team, 'red', `a join naming ${team ?? 'no team'}: ${JSON.stringify(r)}`);
    }
    // The board agrees: the minutes stayed with red.
    assert.deepEqual((await boardGet(m.c, `challenge:${def.event}:teams`)).entries, [{ rank: 1, name: 'red', score: 15 }]);
  });

  it('"boards": false keeps a member off the challenge board, as off every board', async () => {
    const def = await createChallenge(srv);
    const shy = await login('Shy');
    const open = await login('Open');
    const r = await shy.c.request({ type: 'profile.set', profile: { boards: false } });
    assert.equal(r.type, 'profile.set', JSON.stringify(r));
    for (const m of [shy, open]) {
      await join(m, def);
      await m.upload({ date: FROM, min: m === shy ? 40 : 20 });
    }
    await shy.check(def, 'own progress still counts'); // 40
    const all = await boardGet(open.c, `challenge:${def.event}:all`);
    assert.deepEqual([all.size, all.entries], [1, [{ rank: 1, name: 'Open', score: 20 }]], JSON.stringify(all));
  });

  it('a team whose total falls back to 0 leaves the teams board, like a team that never scored', async () => {
    const def = await createChallenge(srv, { teams: [{ id: 'red', name: 'Red' }, { id: 'blue', name: 'Blue' }] });
    const a = await login('Rosa');
    const b = await login('Blake');
    await join(a, def, 'red');
    await join(b, def, 'blue'); // blue never scores
    const [cid] = await a.upload({ date: FROM, min: 30 });
    await b.upload({ date: addDays(TO, 2), min: 30 }); // outside the window
    const board = `challenge:${def.event}:teams`;
    assert.deepEqual((await boardGet(a.c, board)).entries, [{ rank: 1, name: 'red', score: 30 }]);
    await a.remove(cid);
    await a.check(def);
    const t = await boardGet(a.c, board);
    assert.deepEqual([t.size, t.entries], [0, []], JSON.stringify(t));
    const all = await boardGet(a.c, `challenge:${def.event}:all`);
    assert.deepEqual([all.size, all.entries], [0, []], JSON.stringify(all));
  });

  it('account.delete takes the member off the challenge boards', async () => {
    const def = await createChallenge(srv, { teams: [{ id: 'red', name: 'Red' }], team_cap: 50 });
    const stay = await login('Stay');
    const gone = await login('Gone');
    await join(stay, def, 'red');
    await join(gone, def, 'red');
    await stay.upload({ date: FROM, min: 20 });
    await gone.upload({ date: FROM, min: 90 });
    assert.deepEqual((await boardGet(stay.c, `challenge:${def.event}:teams`)).entries, [{ rank: 1, name: 'red', score: 70 }]);
    const d = await gone.c.request({ type: 'account.delete', confirm: true });
    assert.equal(d.type, 'account.delete', JSON.stringify(d));
    assert.deepEqual((await boardGet(stay.c, `challenge:${def.event}:all`)).entries, [{ rank: 1, name: 'Stay', score: 20 }]);
    assert.deepEqual((await boardGet(stay.c, `challenge:${def.event}:teams`)).entries, [{ rank: 1, name: 'red', score: 20 }]);
  });

  it('challenge boards: members only; rank.get refused', async () => {
    const def = await createChallenge(srv, { teams: [{ id: 'red', name: 'Red' }] });
    const m = await login('Reader');
    await join(m, def, 'red');
    await m.upload({ date: FROM, min: 10 });
    const spectator = await connect(srv.url);
    for (const b of [`challenge:${def.event}:all`, `challenge:${def.event}:teams`]) {
      assertError(await spectator.request({ type: 'leaderboard.get', board: b }), 'unauthenticated', 'board');
      assertError(await spectator.request({ type: 'leaderboard.subscribe', board: b }), 'unauthenticated', 'board');
      assertError(await m.c.request({ type: 'rank.get', board: b }), 'invalid_value', 'board');
    }
    await spectator.closeAndWait();
    assert.deepEqual((await boardGet(m.c, `challenge:${def.event}:teams`)).entries, [{ rank: 1, name: 'red', score: 10 }]);
  });
});

/* ------------------------------------------------------------------ */

describe('challenge boards with 1 and 4 shards', { skip: onlyOneRedis }, () => {
  let s1, s4;
  const clients = [];
  before(async () => {
    [s1, s4] = await Promise.all([
      startServer({ env: { ...FAST, FITSYNC_SHARDS: '1' } }),
      startServer({ env: { ...FAST, FITSYNC_SHARDS: '4' } }),
    ]);
  });
  after(async () => {
    for (const c of clients) await c.closeAndWait().catch(() => {});
    await Promise.all([s1?.stop(), s4?.stop()]);
  });

  it('the same members and data give the same boards', async () => {
    const event = uniq('shards');
    const teams = ['red', 'blue', 'green', 'gold'];
    const fields = { event, teams: teams.map((id) => ({ id, name: id.toUpperCase() })), team_cap: 120 };
    const boards = [];
    let model;
    for (const srv of [s1, s4]) {
      const def = await createChallenge(srv, fields);
      const ms = [];
      for (let i = 0; i < 16; i++) {
        const m = await Member.login(srv, `M${String(i).padStart(2, '0')}`);
        clients.push(...m.clients);
        // Distinct progress: 7 + 11 i minutes, doubled when vigorous (every third member).
        const vig = i % 3 === 0;
        await m.upload({ date: addDays(FROM, i % 7), hh: 6 + (i % 5), min: 7 + 11 * i, intensity: vig ? 'vigorous' : 'moderate', type: vig ? 'running' : 'walking' });
        await join(m, def, i === 15 ? undefined : teams[i % 4]);
        if (i % 4 === 1) await m.upload({ date: addDays(TO, 1), min: 200 }); // outside: changes nothing
        ms.push(m);
      }
      model = ms;
      const c = ms[0].c;
      boards.push({
        all: await boardGet(c, `challenge:${event}:all`, { limit: 100 }),
        page: await boardGet(c, `challenge:${event}:all`, { offset: 3, limit: 4 }),
        teams: await boardGet(c, `challenge:${event}:teams`),
        def,
      });
    }
    const [one, four] = boards;
    const def = one.def;
    const wantAll = expectedAll(model, def);
    assert.equal(wantAll.length, 16);
    assert.deepEqual(one.all.entries, wantAll);
    assert.equal(one.all.size, 16);
    assert.deepEqual(one.page.entries, wantAll.slice(3, 7));
    assert.deepEqual(one.teams.entries, expectedTeams(model, def));
    assert.equal(one.teams.size, 4);
    for (const k of ['all', 'page', 'teams']) {
      assert.deepEqual(four[k].entries, one[k].entries, `${k} with 4 shards`);
      assert.equal(four[k].size, one[k].size, `${k} size with 4 shards`);
    }
  });
});

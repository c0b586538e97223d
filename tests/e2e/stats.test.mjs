// stats.test.mjs: the staff statistics (stats.get, stats.subscribe,
// GET /api/v1/stats and /api/v1/stats.csv) and GET /metrics, against a real
// fitsyncd with its embedded Redis.
//
// 30 members with profiles (districts, birth years in every age band plus a
// 3-year-old and members without a birth year, genders, one pregnant) upload
// sessions (some overlapping, some with strength/balance flags) and daily
// summaries over the previous ISO week and the current one. The test keeps
// its own model of everything it sent and computes every figure from it
// independently: the union of overlapping sessions at the higher intensity,
// the day rule against summaries, the WHO 2020 targets (adults 150
// equivalent minutes = moderate + 2 x vigorous, children 5-17 (and under 5)
// 420 MVPA minutes with 3 vigorous and 3 strength days, 65+ as adults plus 3
// balance days, pregnancy 150 MVPA minutes, no birth year = adult) and the
// k-suppression: a segment with fewer than k active members shows every
// figure as "<k". Districts are chosen so that one has exactly 5 active
// members, one 4 (suppressed) and one none. Then sessions are edited and
// deleted, a summary deleted, a member moves district and another deletes
// their account, and the figures must follow. Programme totals are checked
// with a timed relay (teams, laps) and a virtual challenge (joins);
// connected devices against the connections the test holds open; a second
// server with FITSYNC_STATS_K=2 shows the numbers the first suppresses.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/stats.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startServer,
  connect,
  mintToken,
  waitFor,
  sleep,
  MIN,
  rfc3339,
  localDate,
  addDays,
  mondayOf,
  isoWeek,
  at,
} from './lib.mjs';

const OFF = 8 * 60; // config/fitsync.json "timezone": "+08:00": the programme's zone
const FAST = { FITSYNC_RATE_MESSAGES_PER_S: '100000', FITSYNC_RATE_BURST: '100000', FITSYNC_MAX_AGE_WEEKS: '0' };
const FIGS = ['active_members', 'aerobic_met', 'guideline_met', 'activities', 'moderate_min', 'vigorous_min', 'equivalent_min'];
const GENDERS = ['female', 'male', 'other', 'undisclosed'];
const BANDS = [
  ['5-17', 5, 17],
  ['18-34', 18, 34],
  ['35-49', 35, 49],
  ['50-64', 50, 64],
  ['65+', 65, Infinity],
];
const DISTRICTS = [
  'central-and-western', 'wan-chai', 'eastern', 'southern', 'yau-tsim-mong', 'sham-shui-po',
  'kowloon-city', 'wong-tai-sin', 'kwun-tong', 'kwai-tsing', 'tsuen-wan', 'tuen-mun', 'yuen-long',
  'north', 'tai-po', 'sha-tin', 'sai-kung', 'islands',
];

/* ------------------------------------------------------------------ */
/* HTTP                                                                */

function get(port, path, token) {
  return new Promise((resolve, reject) => {
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    const req = http.get({ host: '127.0.0.1', port, path, headers, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let body;
        try {
          body = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timed out`)));
    req.on('error', reject);
  });
}

/* Prometheus text format 0.0.4: every line a comment or `name{labels} value`. */
function parseMetrics(text) {
  const types = new Map();
  const samples = new Map(); // 'name{labels}' -> value
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      types.set(m[1], m[2]);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$/.exec(line);
    assert.ok(m, `a valid Prometheus line: ${JSON.stringify(line)}`);
    const v = m[3] === '+Inf' ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(v), `a number in ${line}`);
    const family = m[1].replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(m[1]) || types.get(family) === 'histogram', `# TYPE declared before ${m[1]}`);
    samples.set(m[1] + (m[2] || ''), v);
  }
  return { types, samples, get: (k) => samples.get(k) ?? 0 };
}

/* ------------------------------------------------------------------ */
/* the independent model                                               */

/*
 * A member: profile {birth_year, district, gender, pregnant}, sessions
 * cid -> {date, s, e (minutes after local midnight), intensity, strength,
 * balance, live}, summaries "date|source" -> {mo, vi, live}.
 */
class Model {
  constructor() {
    this.members = new Map();
    this.laps = 0;
    this.events = 0;
    this.participations = 0;
  }
  member(id) {
    if (!this.members.has(id))
      this.members.set(id, { id, profile: {}, sessions: new Map(), summaries: new Map(), seen: false, deleted: false });
    return this.members.get(id);
  }

  /* A member's figures for a local date: {mo, vi, sg, ba} or null when the day holds nothing. */
  day(m, date) {
    const ss = [...m.sessions.values()].filter((s) => s.live && s.date === date);
    const sums = [...m.summaries.entries()].filter(([k, v]) => v.live && k.startsWith(date + '|')).map(([, v]) => v);
    if (!ss.length && !sums.length) return null;
    const lvl = { light: 1, moderate: 2, vigorous: 3 };
    let mo = 0;
    let vi = 0;
    for (let t = 0; t < 1440; t++) {
      let best = 0;
      for (const s of ss) if (s.s <= t && t < s.e) best = Math.max(best, lvl[s.intensity]);
      if (best === 2) mo++;
      if (best === 3) vi++;
    }
    for (const v of sums) {
      mo = Math.max(mo, v.mo);
      vi = Math.max(vi, v.vi);
    }
    return { mo, vi, sg: ss.some((s) => s.strength), ba: ss.some((s) => s.balance) };
  }

  /* WHO 2020 band of a member in a year (as protocol/fit_who.c). */
  static who(p, year) {
    const children = { aerobic: 420, mvpa: true, vd: 3, sd: 3, bd: 0 };
    const adults = { aerobic: 150, mvpa: false, vd: 0, sd: 2, bd: 0 };
    if (p.pregnant) return { aerobic: 150, mvpa: true, vd: 0, sd: 0, bd: 0 };
    if (p.birth_year === undefined) return adults;
    const age = year - p.birth_year;
    if (age <= 17) return children;
    if (age <= 64) return adults;
    return { ...adults, bd: 3 };
  }

  static segments(p, year) {
    const segs = ['all'];
    if (p.district) segs.push(`d:${p.district}`);
    if (p.birth_year !== undefined) {
      const age = year - p.birth_year;
      const b = BANDS.find(([, lo, hi]) => age >= lo && age <= hi);
      if (b) segs.push(`a:${b[0]}`);
    }
    if (p.gender) segs.push(`g:${p.gender}`);
    return segs;
  }

  /* Sums per segment for an ISO week: seg -> {a, am, gm, n, mo, vi, eq}. */
  week(week) {
    const year = Number(week.slice(0, 4));
    const sums = new Map();
    for (const m of this.members.values()) {
      if (m.deleted) continue;
      const dates = new Set();
      for (const s of m.sessions.values()) if (s.live && isoWeek(s.date) === week) dates.add(s.date);
      for (const [k, v] of m.summaries) if (v.live && isoWeek(k.slice(0, 10)) === week) dates.add(k.slice(0, 10));
      const c = { a: 0, am: 0, gm: 0, n: 0, mo: 0, vi: 0, eq: 0 };
      let vd = 0;
      let sd = 0;
      let bd = 0;
      for (const d of dates) {
        const f = this.day(m, d);
        c.mo += f.mo;
        c.vi += f.vi;
        if (f.vi > 0) vd++;
        if (f.sg) sd++;
        if (f.ba) bd++;
      }
      c.n = [...m.sessions.values()].filter((s) => s.live && isoWeek(s.date) === week).length;
      c.eq = c.mo + 2 * c.vi;
      c.a = c.mo + c.vi > 0 ? 1 : 0;
      const w = Model.who(m.profile, year);
      if ((w.mvpa ? c.mo + c.vi : c.eq) >= w.aerobic) c.am = 1;
      if (c.am && vd >= w.vd && sd >= w.sd && bd >= w.bd) c.gm = 1;
      if (!c.a && !c.n) continue;
      for (const seg of Model.segments(m.profile, year)) {
        const t = sums.get(seg) || { a: 0, am: 0, gm: 0, n: 0, mo: 0, vi: 0, eq: 0 };
        for (const k of Object.keys(t)) t[k] += c[k];
        sums.set(seg, t);
      }
    }
    return sums;
  }

  todayActive(today) {
    let n = 0;
    for (const m of this.members.values()) {
      if (m.deleted) continue;
      const f = this.day(m, today);
      if (f && f.mo + f.vi > 0) n++;
    }
    return n;
  }

  totals() {
    const live = [...this.members.values()].filter((m) => !m.deleted);
    return {
      members: live.filter((m) => m.seen).length,
      activities: live.reduce((n, m) => n + [...m.sessions.values()].filter((s) => s.live).length, 0),
      events: this.events,
      participations: this.participations,
      laps: this.laps,
    };
  }
}

/* A segment as the server must show it. */
function shown(t, k) {
  t = t || { a: 0, am: 0, gm: 0, n: 0, mo: 0, vi: 0, eq: 0 };
  const v = [t.a, t.am, t.gm, t.n, t.mo, t.vi, t.eq];
  const o = {};
  // Member counts (active, aerobic_met, guideline_met) from 1 to k-1 are suppressed one by one too.
  FIGS.forEach((f, i) => (o[f] = t.a < k || (i < 3 && v[i] > 0 && v[i] < k) ? `<${k}` : v[i]));
  return o;
}
const figs = (o) => Object.fromEntries(FIGS.map((f) => [f, o[f]]));

/* Checks a stats document's week figures against the model. */
function checkWeek(stats, model, week, k, label) {
  const sums = model.week(week);
  assert.equal(stats.week, week, `${label}: week`);
  assert.equal(stats.k, k, `${label}: k`);
  const wf = stats.week_figures;
  assert.deepEqual(figs(wf.all), shown(sums.get('all'), k), `${label}: all`);
  assert.deepEqual(wf.by_district.map((d) => d.district), DISTRICTS, `${label}: the 18 districts in order`);
  for (const d of wf.by_district) assert.deepEqual(figs(d), shown(sums.get(`d:${d.district}`), k), `${label}: district ${d.district}`);
  assert.deepEqual(wf.by_age_band.map((b) => b.age_band), BANDS.map((b) => b[0]), `${label}: bands`);
  for (const b of wf.by_age_band) assert.deepEqual(figs(b), shown(sums.get(`a:${b.age_band}`), k), `${label}: band ${b.age_band}`);
  assert.deepEqual(wf.by_gender.map((g) => g.gender), GENDERS, `${label}: genders`);
  for (const g of wf.by_gender) assert.deepEqual(figs(g), shown(sums.get(`g:${g.gender}`), k), `${label}: gender ${g.gender}`);
  assert.equal(stats.trend.length, 12, `${label}: 12 trend weeks`);
  assert.equal(stats.trend.at(-1).week, week, `${label}: the trend ends with the week shown`);
  for (const t of stats.trend) assert.deepEqual(figs(t), shown(model.week(t.week).get('all'), k), `${label}: trend ${t.week}`);
}

/* Parses the CSV export and checks it row by row against a stats document. */
function checkCsv(text, stats) {
  const lines = text.trimEnd().split('\n');
  assert.equal(lines[0], 'week,segment,value,active_members,aerobic_met,guideline_met,activities,moderate_min,vigorous_min,equivalent_min');
  const wf = stats.week_figures;
  const want = [
    ['all', 'all', wf.all],
    ...wf.by_district.map((d) => ['district', d.district, d]),
    ...wf.by_age_band.map((b) => ['age_band', b.age_band, b]),
    ...wf.by_gender.map((g) => ['gender', g.gender, g]),
  ];
  assert.equal(lines.length - 1, want.length, 'one CSV row per segment');
  want.forEach(([seg, value, o], i) => {
    assert.equal(lines[i + 1], [stats.week, seg, value, ...FIGS.map((f) => String(o[f]))].join(','), `CSV row ${seg} ${value}`);
  });
}

/* The parts of a stats document that do not move by themselves (clock, devices, uploads per minute). */
function stable(stats) {
  const { generated_at, today, connected_devices, ...rest } = stats;
  return { ...rest, today: { date: today.date, active_members: today.active_members } };
}

/* ------------------------------------------------------------------ */
/* time                                                                */

const NOW = Date.now();
const TODAY = localDate(NOW, OFF);
const CUR = isoWeek(TODAY);
const PAST_MON = addDays(mondayOf(TODAY), -7);
const PAST = isoWeek(PAST_MON);
const D = (i) => addDays(PAST_MON, i); // the past week's days, 0 = Monday
const NOW_LOCAL_MIN = Math.floor((NOW - at(TODAY, 0, 0, OFF)) / MIN); // minutes since local midnight
const RECORDED = rfc3339(NOW - 10 * MIN, OFF);

/* A session of the plan: [dayIndex, hh, mm, minutes, intensity, flags]. */
const PATTERNS = {
  // adult strong: 2 vigorous strength days + moderate: mo 40 vi 60 eq 160
  A: { s: [[0, 7, 0, 30, 'vigorous', { strength: true }], [2, 7, 0, 30, 'vigorous', { strength: true }], [4, 18, 0, 40, 'moderate']] },
  // low: 30 moderate minutes
  B: { s: [[1, 12, 0, 30, 'moderate']] },
  // overlapping sessions (union: mo 30, vi 60), a summary, balance on 3 days, strength on 2
  C: {
    s: [
      [1, 7, 0, 60, 'moderate'],
      [1, 7, 30, 60, 'vigorous'],
      [0, 12, 0, 20, 'light', { balance: true }],
      [2, 12, 0, 20, 'light', { balance: true }],
      [5, 12, 0, 20, 'light', { balance: true }],
      [0, 18, 0, 30, 'moderate', { strength: true }],
      [5, 18, 0, 30, 'moderate', { strength: true }],
    ],
    m: [[3, 'fitbit', 40, 0]],
  },
  // summaries only: 3 x 60 moderate
  D: { m: [[0, 'fitbit', 60, 0], [1, 'fitbit', 60, 0], [2, 'fitbit', 60, 0]] },
  // a child's week: 65 MVPA minutes every day, vigorous and strength on 3 days
  E: {
    s: [0, 1, 2, 3, 4, 5, 6].flatMap((d) =>
      d % 2 === 0 && d < 6
        ? [[d, 9, 0, 40, 'moderate'], [d, 10, 0, 25, 'vigorous', { strength: true }]]
        : [[d, 9, 0, 65, 'moderate']]
    ),
  },
  // light only: a session, not active
  F: { s: [[2, 10, 0, 45, 'light']] },
  // a summary larger than the day's session: mo max(30, 50), vi 10
  G: { s: [[0, 9, 0, 30, 'moderate']], m: [[0, 'garmin', 50, 10]] },
};

/* id, district, birth year, gender, pregnant, pattern of the past week, active this week */
const MEMBERS = [
  ['w1', 'wan-chai', 1996, 'female', false, 'A', true],
  ['w2', 'wan-chai', 1990, 'male', false, 'C', true],
  ['w3', 'wan-chai', 2014, 'female', false, 'E', true],
  ['w4', 'wan-chai', 1955, 'male', false, 'C', true],
  ['w5', 'wan-chai', 1980, 'other', false, 'B', true],
  ['s1', 'sha-tin', 2000, 'female', false, 'A', true],
  ['s2', 'sha-tin', 1985, 'male', false, 'D', true],
  ['s3', 'sha-tin', 1950, 'female', false, 'A', true],
  ['s4', 'sha-tin', 2012, 'undisclosed', false, 'G', true],
  ['e1', 'eastern', 1990, 'female', false, 'F', false],
  ['e2', 'eastern', 1992, 'male', false, null, false],
  ['k1', 'kwun-tong', 1994, 'female', true, 'D', true],
  ['k2', 'kwun-tong', 1960, 'male', false, 'A', true],
  ['k3', 'kwun-tong', 2023, 'female', false, 'E', true],
  ['k4', 'kwun-tong', 1999, 'male', false, 'C', true],
  ['k5', 'kwun-tong', 2010, 'female', false, 'A', true],
  ['k6', 'kwun-tong', 1975, 'male', false, 'G', true],
  ['k7', 'kwun-tong', 1945, 'other', false, 'E', true],
  ['k8', 'kwun-tong', 1998, 'female', false, 'D', true],
  ['t1', 'tuen-mun', 1991, 'male', false, 'A', true],
  ['t2', 'tuen-mun', 1993, 'female', false, 'B', true],
  ['t3', 'tuen-mun', 1966, 'male', false, 'C', true],
  ['t4', 'tuen-mun', 2011, 'female', false, 'E', true],
  ['t5', 'tuen-mun', 1987, 'male', false, 'F', false],
  ['t6', 'tuen-mun', 1970, 'female', false, 'D', true],
  ['n1', undefined, undefined, undefined, false, 'A', true],
  ['n2', undefined, 1985, 'female', false, 'C', true],
  ['n3', undefined, undefined, 'male', false, 'D', true],
  ['n4', undefined, 2001, 'undisclosed', false, 'E', true],
  ['n5', undefined, 1958, 'female', false, 'B', true],
];

/* ------------------------------------------------------------------ */

describe('staff statistics', { timeout: 110000 }, () => {
  let srv;
  let srv2;
  const model = new Model();
  const clients = new Map(); // member id -> Client
  const extra = []; // other connections held open (staff, host)
  let staff;
  let staffToken;
  const rev = new Map(); // "member/cid" -> rev

  /* Sends and records a session batch for member id. */
  async function upload(id, sessions) {
    const m = model.member(id);
    const acts = sessions.map(({ cid, date, s, min, intensity, strength, balance }) => {
      const a = { client_id: cid, type: 'running', start: rfc3339(at(date, 0, s, OFF), OFF), duration_s: min * 60, intensity };
      if (strength) a.strength = true;
      if (balance) a.balance = true;
      return a;
    });
    const r = await clients.get(id).request({ type: 'activity.upload', activities: acts });
    assert.equal(r.rejected, 0, `upload for ${id}: ${JSON.stringify(r)}`);
    sessions.forEach(({ cid, date, s, min, intensity, strength, balance }, i) => {
      m.sessions.set(cid, { date, s, e: s + min, intensity, strength: !!strength, balance: !!balance, live: true });
      rev.set(`${id}/${cid}`, r.results[i].rev);
    });
    m.seen = true;
  }

  async function summary(id, date, source, mo, vi, recorded = RECORDED) {
    const r = await clients.get(id).request({
      type: 'summary.upload',
      summaries: [{ date, utc_offset: '+08:00', source, recorded_at: recorded, moderate_min: mo, vigorous_min: vi }],
    });
    assert.equal(r.rejected, 0, `summary for ${id}: ${JSON.stringify(r)}`);
    model.member(id).summaries.set(`${date}|${source}`, { mo, vi, live: true });
    model.member(id).seen = true;
  }

  async function stats(week) {
    const r = await staff.request(week ? { type: 'stats.get', week } : { type: 'stats.get' });
    assert.equal(r.type, 'stats.get', JSON.stringify(r));
    return r.stats;
  }

  async function checkAll(label) {
    const k = 5;
    const cur = await stats();
    checkWeek(cur, model, CUR, k, `${label} (stats.get, current week)`);
    const past = await stats(PAST);
    checkWeek(past, model, PAST, k, `${label} (stats.get, ${PAST})`);
    for (const s of [cur, past]) {
      assert.deepEqual(s.totals, model.totals(), `${label}: totals`);
      assert.equal(s.today.date, TODAY);
      const ta = model.todayActive(TODAY);
      assert.deepEqual(s.today.active_members, ta < k ? `<${k}` : ta, `${label}: today's active members`);
    }
    const h = await get(srv.port, `/api/v1/stats?week=${PAST}`, staffToken);
    assert.equal(h.status, 200);
    assert.match(h.headers['content-type'], /^application\/json/);
    checkWeek(h.body, model, PAST, k, `${label} (GET /api/v1/stats?week=${PAST})`);
    assert.deepEqual(stable(h.body), stable(past), `${label}: the API answers what stats.get does`);
    const hc = await get(srv.port, '/api/v1/stats', staffToken);
    assert.equal(hc.status, 200);
    checkWeek(hc.body, model, CUR, k, `${label} (GET /api/v1/stats)`);
    for (const [q, doc] of [[`?week=${PAST}`, past], ['', cur]]) {
      const c = await get(srv.port, `/api/v1/stats.csv${q}`, staffToken);
      assert.equal(c.status, 200);
      assert.match(c.headers['content-type'], /^text\/csv/);
      checkCsv(c.text, doc);
    }
    return { cur, past };
  }

  before(async () => {
    srv = await startServer({ env: FAST });
    staffToken = srv.token('ops-1', { role: 'staff' });
    staff = await srv.login('ops-1', 'dash', { role: 'staff' });
    extra.push(staff);
    for (const [id, district, by, gender, pregnant] of MEMBERS) {
      const c = await srv.login(id);
      clients.set(id, c);
      const profile = {};
      if (district) profile.district = district;
      if (by !== undefined) profile.birth_year = by;
      if (gender) profile.gender = gender;
      if (pregnant) profile.pregnant = true;
      const r = await c.request({ type: 'profile.set', profile });
      assert.equal(r.type, 'profile.set', JSON.stringify(r));
      const m = model.member(id);
      m.profile = { ...profile };
      m.seen = true;
    }
  });

  after(async () => {
    for (const c of [...clients.values(), ...extra]) c.close();
    if (srv) await srv.stop();
    if (srv2) await srv2.stop();
  });

  it('a fresh server: every segment suppressed, totals count the profiles', async () => {
    const s = await stats();
    assert.deepEqual(figs(s.week_figures.all), shown(null, 5));
    assert.equal(s.today.active_members, '<5');
    assert.deepEqual(s.totals, { members: 30, activities: 0, events: 0, participations: 0, laps: 0 });
    assert.equal(s.today.uploads_per_minute.length, 60);
  });

  it('uploads over two weeks: figures equal the independent count (WebSocket, API, CSV)', async () => {
    let uploads = 0;
    for (const [id, , , , , pat, activeNow] of MEMBERS) {
      if (pat) {
        const p = PATTERNS[pat];
        const ss = (p.s || []).map(([d, hh, mm, min, intensity, flags = {}], i) => ({
          cid: `${id}-p${i}`, date: D(d), s: hh * 60 + mm, min, intensity, ...flags,
        }));
        if (ss.length) await upload(id, ss), (uploads += ss.length);
        for (const [d, source, mo, vi] of p.m || []) await summary(id, D(d), source, mo, vi), uploads++;
      }
      if (activeNow) {
        const i = MEMBERS.findIndex((x) => x[0] === id);
        const heavy = i % 4 === 0;
        await summary(id, TODAY, 'watch', heavy ? 100 : 20 + ((i * 13) % 50), heavy ? 30 : (i % 3) * 10);
        uploads++;
        // A short session today, before now, for some (not in the first half hour of the day).
        if (i % 3 === 0 && NOW_LOCAL_MIN >= 30) {
          await upload(id, [{ cid: `${id}-today`, date: TODAY, s: NOW_LOCAL_MIN - 25, min: 20, intensity: 'vigorous' }]);
          uploads++;
        }
      }
    }
    // The past week holds what the plan says (a spot check of the model itself).
    const sums = model.week(PAST);
    assert.equal(sums.get('d:wan-chai').a, 5, 'the plan: Wan Chai has exactly 5 active members');
    assert.equal(sums.get('d:sha-tin').a, 4, 'the plan: Sha Tin has 4');
    assert.equal(sums.get('d:eastern')?.a ?? 0, 0, 'the plan: Eastern has none');
    assert.ok(sums.get('d:eastern').n > 0, 'Eastern still has a light session');
    assert.ok(sums.get('all').gm > 0 && sums.get('all').gm < sums.get('all').am, 'some meet the whole guideline, fewer than the aerobic target');

    const { cur, past } = await checkAll('after the uploads');
    const wc = past.week_figures.by_district.find((d) => d.district === 'wan-chai');
    assert.equal(wc.active_members, 5, 'exactly k active members are shown');
    for (const seg of ['sha-tin', 'eastern']) {
      const d = past.week_figures.by_district.find((x) => x.district === seg);
      for (const f of FIGS) assert.equal(d[f], '<5', `${seg} ${f} suppressed`);
    }
    // Uploads per minute: every stored upload of the last hour.
    const upm = cur.today.uploads_per_minute.reduce((n, x) => n + x.uploads, 0);
    assert.equal(upm, uploads, 'uploads of the last 60 minutes');
  });

  it('edits, deletes, a district move and an account deletion move the figures', async () => {
    // w1: the Friday session shortened 40 -> 10 minutes (eq 160 -> 130: target no longer met).
    let c = clients.get('w1');
    let r = await c.request({ type: 'activity.update', client_id: 'w1-p2', base_rev: rev.get('w1/w1-p2'), duration_s: 600 });
    assert.equal(r.type, 'activity.update', JSON.stringify(r));
    model.member('w1').sessions.get('w1-p2').e = 18 * 60 + 10;
    // s1: the Wednesday vigorous session deleted.
    r = await clients.get('s1').request({ type: 'activity.delete', client_id: 's1-p1', base_rev: rev.get('s1/s1-p1') });
    assert.equal(r.type, 'activity.delete', JSON.stringify(r));
    model.member('s1').sessions.get('s1-p1').live = false;
    // n3: Tuesday's summary deleted.
    r = await clients.get('n3').request({ type: 'summary.delete', date: D(1), source: 'fitbit' });
    assert.equal(r.type, 'summary.delete', JSON.stringify(r));
    model.member('n3').summaries.get(`${D(1)}|fitbit`).live = false;
    await checkAll('after edits and deletes');

    // k8 moves from Kwun Tong to Sha Tin: Sha Tin reaches 5 and is shown.
    r = await clients.get('k8').request({ type: 'profile.set', profile: { district: 'sha-tin' } });
    assert.equal(r.type, 'profile.set');
    model.member('k8').profile.district = 'sha-tin';
    // w5 deletes their account: Wan Chai falls to 4 and is suppressed.
    c = clients.get('w5');
    r = await c.request({ type: 'account.delete', confirm: true });
    assert.equal(r.type, 'account.delete', JSON.stringify(r));
    model.member('w5').deleted = true;
    await c.closed;
    clients.delete('w5');
    // (connected_devices, which moves with the heartbeat, is checked in its own test below.)
    const { past } = await checkAll('after a move and an account deletion');
    const st = past.week_figures.by_district.find((d) => d.district === 'sha-tin');
    assert.equal(st.active_members, 5, 'Sha Tin shown after the move');
    const wc = past.week_figures.by_district.find((d) => d.district === 'wan-chai');
    assert.equal(wc.active_members, '<5', 'Wan Chai suppressed after the deletion');
  });

  it('programme totals: a timed relay (teams, laps) and a virtual challenge (joins)', async () => {
    const host = await srv.login('hana', 'host-phone', { role: 'host', event: 'relay-st' });
    extra.push(host);
    const start = NOW - 20 * MIN;
    let r = await host.request({
      type: 'event.create', event: 'relay-st', name: 'Stats Relay', kind: 'timed_relay',
      starts_at: new Date(start).toISOString(), duration_s: 7200, lap_m: 400, min_lap_s: 60,
      categories: [{ id: 'open', name: 'Open', group: 'adult' }],
    });
    assert.equal(r.status, 'created', JSON.stringify(r));
    model.events++;
    for (const bib of ['1', '2', '3']) {
      r = await host.request({ type: 'team.register', event: 'relay-st', bib, name: `Team ${bib}`, category: 'open' });
      assert.equal(r.status, 'created', JSON.stringify(r));
      model.participations++;
    }
    r = await host.request({ type: 'event.start', event: 'relay-st', at: new Date(start).toISOString() });
    assert.equal(r.status, 'ok', JSON.stringify(r));
    const lap = (cid, bib, ms) => ({ client_id: cid, bib, at: new Date(start + ms).toISOString() });
    r = await host.request({
      type: 'lap.record', event: 'relay-st',
      laps: [lap('c1', '1', 2 * MIN), lap('c2', '1', 4 * MIN), lap('c3', '2', 3 * MIN), lap('c4', '2', 3 * MIN + 20000), lap('c5', '3', -MIN)],
    });
    assert.deepEqual(r.results.map((x) => x.status), ['counted', 'counted', 'counted', 'double', 'early']);
    model.laps += 3;

    r = await staff.request({
      type: 'event.create', event: 'move-st', name: 'Stats Move', kind: 'virtual',
      from: PAST_MON, to: TODAY, metric: 'equivalent_min', goal: 100,
    });
    assert.equal(r.status, 'created', JSON.stringify(r));
    model.events++;
    for (const id of ['k1', 't1']) {
      r = await clients.get(id).request({ type: 'challenge.join', event: 'move-st' });
      assert.equal(r.status, 'joined', JSON.stringify(r));
      model.participations++;
    }
    r = await clients.get('k1').request({ type: 'challenge.join', event: 'move-st' });
    assert.equal(r.status, 'duplicate', 'a second join is no new participation');

    const s = await stats();
    assert.deepEqual(s.totals, model.totals());
    assert.deepEqual(s.totals, { ...s.totals, events: 2, participations: 5, laps: 3 });
    const ev = Object.fromEntries(s.events.map((e) => [e.event, e]));
    assert.deepEqual(ev['relay-st'], { event: 'relay-st', name: 'Stats Relay', kind: 'timed_relay', state: 'started', teams: 3, laps: 3, participants: 3 });
    assert.equal(ev['move-st'].participants, 2);
    assert.equal(ev['move-st'].kind, 'virtual');
  });

  it('connected devices: the connections open now, across the heartbeat', async () => {
    const open = () => [...clients.values(), ...extra].filter((c) => c.isOpen).length;
    await waitFor(async () => (await stats()).connected_devices === open(), { timeout: 12000, what: `connected_devices = ${open()}` });
    const more = [await srv.login('n1', 'tablet'), await srv.login('n2', 'tablet')];
    extra.push(...more);
    await waitFor(async () => (await stats()).connected_devices === open(), { timeout: 12000, what: `connected_devices = ${open()} after two more` });
    for (const c of more) await c.closeAndWait();
    await waitFor(async () => (await stats()).connected_devices === open(), { timeout: 12000, what: `connected_devices = ${open()} after they closed` });
  });

  it('stats.subscribe pushes when figures change, at most once a second; unsubscribe stops it', async () => {
    const r = await staff.request({ type: 'stats.subscribe', week: PAST });
    assert.equal(r.type, 'stats.subscribe');
    checkWeek(r.stats, model, PAST, 5, 'stats.subscribe reply');
    staff.takePushes((m) => m.type === 'stats');
    // ~3 s of uploads as fast as the replies come back.
    const t0 = Date.now();
    const c = clients.get('t2');
    let i = 0;
    while (Date.now() - t0 < 3000) {
      const cid = `t2-burst${i++}`;
      const s = 6 * 60 + (i % 600);
      await upload('t2', [{ cid, date: D(6), s, min: 1, intensity: 'moderate' }]);
      await sleep(20);
    }
    const t1 = Date.now();
    await sleep(1300); // the last change's push
    const pushes = staff.messages.filter((m) => m.type === 'stats' && m.re === undefined);
    staff.takePushes((m) => m.type === 'stats');
    const elapsed = (Date.now() - t0) / 1000;
    assert.ok(i > 20, `many uploads were sent (${i})`);
    assert.ok(pushes.length >= 2, `pushes while figures changed (${pushes.length})`);
    assert.ok(pushes.length <= Math.ceil(elapsed) + 1, `at most one push a second (${pushes.length} in ${elapsed} s)`);
    for (const p of pushes) assert.ok(p.stats && p.stats.week === PAST && p.stats.k === 5);
    // The last push holds the final figures.
    checkWeek(pushes.at(-1).stats, model, PAST, 5, 'the last stats push');
    assert.ok(t1 > t0);
    // No change: no push (allow one for a minute boundary of uploads_per_minute).
    const quiet = staff.messages.length;
    await sleep(2500);
    assert.ok(staff.messages.slice(quiet).filter((m) => m.type === 'stats').length <= 1, 'no pushes without a change');
    const u = await staff.request({ type: 'stats.unsubscribe' });
    assert.deepEqual(u, { type: 'stats.unsubscribe', re: u.re, was_subscribed: true });
    staff.takePushes((m) => m.type === 'stats'); // sent before the unsubscribe, read before its reply
    await upload('t2', [{ cid: 't2-after', date: D(6), s: 20 * 60, min: 5, intensity: 'vigorous' }]);
    assert.ok(await staff.quiet((m) => m.type === 'stats', 2000), 'no push after stats.unsubscribe');
    const u2 = await staff.request({ type: 'stats.unsubscribe' });
    assert.equal(u2.was_subscribed, false);
    await checkAll('after the burst');
  });

  it('only staff: members and hosts get forbidden; HTTP 401, 403, 400', async () => {
    const m = clients.get('k2');
    for (const type of ['stats.get', 'stats.subscribe']) {
      const r = await m.request({ type });
      assert.equal(r.code, 'forbidden', `${type} by a member`);
      const h = extra.find((c) => c.welcome && c.welcome.role === 'host') || (await srv.login('hana', 'h2', { role: 'host', event: 'relay-st' }));
      const rh = await h.request({ type });
      assert.equal(rh.code, 'forbidden', `${type} by a host`);
    }
    const anon = await connect(srv.url);
    extra.push(anon);
    assert.equal((await anon.request({ type: 'stats.get' })).code, 'unauthenticated');
    assert.equal((await staff.request({ type: 'stats.get', week: '2026-W54' })).code, 'invalid_value');
    assert.equal((await staff.request({ type: 'stats.get', week: 10 })).code, 'invalid_value');

    for (const p of ['/api/v1/stats', '/api/v1/stats.csv']) {
      assert.equal((await get(srv.port, p)).status, 401, `${p} without a token`);
      const bad = await get(srv.port, p, mintToken('not-the-secret', { sub: 'x', role: 'staff' }));
      assert.deepEqual([bad.status, bad.body.error], [401, 'invalid_token'], `${p} badly signed`);
      const old = await get(srv.port, p, mintToken(srv.secret, { sub: 'x', role: 'staff', exp: 1000 }));
      assert.deepEqual([old.status, old.body.error], [401, 'token_expired'], `${p} expired`);
      const f = await get(srv.port, p, srv.token('k2'));
      assert.equal(f.status, 403, `${p} member token`);
      assert.equal(f.body.error, 'forbidden');
      assert.equal((await get(srv.port, p, srv.token('hana', { role: 'host', event: 'relay-st' }))).status, 403, `${p} host token`);
      for (const w of ['2026-W00', 'W10', '2026-W10x', '']) {
        const b = await get(srv.port, `${p}?week=${w}`, staffToken);
        assert.equal(b.status, 400, `${p}?week=${w}`);
        assert.equal(b.body.error, 'invalid_value');
      }
    }
  });

  it('/metrics is Prometheus text and its counters move', async () => {
    const before = await get(srv.port, '/metrics');
    assert.equal(before.status, 200);
    assert.match(before.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const m0 = parseMetrics(before.text);
    for (const [name, type] of [
      ['fitsync_connections', 'gauge'], ['fitsync_push_queue_bytes', 'gauge'], ['fitsync_requests_in_flight', 'gauge'],
      ['fitsync_redis_up', 'gauge'], ['fitsync_redis_reconnects_total', 'counter'],
      ['fitsync_redis_child_restarts_total', 'counter'], ['fitsync_leaderboard_reads_total', 'counter'],
      ['fitsync_leaderboard_pushes_total', 'counter'], ['fitsync_messages_in_total', 'counter'],
      ['fitsync_messages_out_total', 'counter'], ['fitsync_errors_total', 'counter'],
      ['fitsync_redis_command_seconds', 'histogram'],
    ])
      assert.equal(m0.types.get(name), type, `${name} is a ${type}`);
    assert.equal(m0.get('fitsync_redis_up'), 1);
    const open = [...clients.values(), ...extra].filter((c) => c.isOpen).length;
    assert.equal(m0.get('fitsync_connections'), open, 'fitsync_connections = the open connections');
    // The histogram: cumulative buckets ending in +Inf = count.
    const buckets = [...m0.samples].filter(([k]) => k.startsWith('fitsync_redis_command_seconds_bucket'));
    assert.ok(buckets.length >= 2);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i][1] >= buckets[i - 1][1], 'buckets are cumulative');
    assert.equal(buckets.at(-1)[0], 'fitsync_redis_command_seconds_bucket{le="+Inf"}');
    assert.equal(buckets.at(-1)[1], m0.get('fitsync_redis_command_seconds_count'));

    const c = clients.get('t6');
    const N = 7;
    for (let i = 0; i < N; i++)
      await upload('t6', [{ cid: `t6-m${i}`, date: D(6), s: 8 * 60 + i * 10, min: 5, intensity: 'moderate' }]);
    const bad = await c.request({
      type: 'activity.upload',
      activities: [{ client_id: 't6-bad', type: 'running', start: rfc3339(at(D(6), 9, 0, OFF), OFF), duration_s: 60, intensity: 'extreme' }],
    });
    assert.equal(bad.results[0].code, 'invalid_value');
    const m1 = parseMetrics((await get(srv.port, '/metrics')).text);
    const d = (k) => m1.get(k) - m0.get(k);
    assert.equal(d('fitsync_messages_in_total{type="activity.upload"}'), N + 1, 'messages_in for activity.upload');
    assert.equal(d('fitsync_messages_out_total{type="activity.upload"}'), N + 1, 'messages_out for activity.upload');
    assert.equal(d('fitsync_errors_total{code="invalid_value"}'), 1, 'errors_total{code="invalid_value"}');
    assert.ok(d('fitsync_redis_command_seconds_count') >= N, 'Redis commands were timed');
    await checkAll('after the metrics uploads');
  });

  it('with FITSYNC_STATS_K=2 the same kind of small segments show numbers', async () => {
    srv2 = await startServer({ env: { ...FAST, FITSYNC_STATS_K: '2' } });
    const m2 = new Model();
    const plan = [['x1', 'wan-chai', 1990, 'female'], ['x2', 'wan-chai', 1960, 'male'], ['x3', 'sha-tin', 1950, 'female']];
    const cs = [];
    for (const [id, district, by, gender] of plan) {
      const c = await srv2.login(id);
      cs.push(c);
      await c.request({ type: 'profile.set', profile: { district, birth_year: by, gender } });
      const mm = m2.member(id);
      mm.profile = { district, birth_year: by, gender };
      mm.seen = true;
      const r = await c.request({
        type: 'activity.upload',
        activities: [{ client_id: `${id}-1`, type: 'running', start: rfc3339(at(D(2), 7, 0, OFF), OFF), duration_s: 80 * 60, intensity: 'vigorous' }],
      });
      assert.equal(r.rejected, 0);
      mm.sessions.set(`${id}-1`, { date: D(2), s: 420, e: 500, intensity: 'vigorous', strength: false, balance: false, live: true });
    }
    const st = await srv2.login('ops-2', 'dash', { role: 'staff' });
    cs.push(st);
    const r = await st.request({ type: 'stats.get', week: PAST });
    checkWeek(r.stats, m2, PAST, 2, 'k=2');
    const wc = r.stats.week_figures.by_district.find((d) => d.district === 'wan-chai');
    assert.deepEqual(figs(wc), { active_members: 2, aerobic_met: 2, guideline_met: 0, activities: 2, moderate_min: 0, vigorous_min: 160, equivalent_min: 320 });
    assert.equal(r.stats.week_figures.by_district.find((d) => d.district === 'sha-tin').active_members, '<2');
    const csv = await get(srv2.port, `/api/v1/stats.csv?week=${PAST}`, srv2.token('ops-2', { role: 'staff' }));
    assert.match(csv.text, new RegExp(`^${PAST},district,wan-chai,2,2,0,2,0,160,320$`, 'm'));
    assert.match(csv.text, new RegExp(`^${PAST},district,sha-tin,<2,<2,<2,<2,<2,<2,<2$`, 'm'));
    for (const c of cs) c.close();
  });
});

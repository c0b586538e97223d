// relay-sim-lib.mjs: the engine of tools/relay-sim.mjs, a rehearsal of a timed
// team relay against a running fitsyncd (docs: the header of tools/relay-sim.mjs).
//
// Two parts, usable separately:
//
//   generatePlan(def, opts)  pure and deterministic for a seed: the teams (with
//                            categories), every crossing of the line (lap times
//                            around a realistic pace, double scans, laps after
//                            the cut-off, a few scans of unknown bibs), which
//                            marshal scans each, the offline window of one
//                            marshal, the host's corrections and awards. Times
//                            are relative to the official start (ms).
//   runRelay(opts)           drives a server through the plan: mints the host
//                            token, creates the event, imports the teams,
//                            mints marshal tokens (marshal.token), starts the
//                            event, sends crossings from several marshal
//                            connections as a sped-up clock advances, makes
//                            the corrections, assigns awards, finishes, reads
//                            event.results, and returns a dump of everything
//                            sent and every reply.
//
// The simulated event started in the past: a crossing's `at` is the simulated
// time of the crossing, start + elapsed x speed, and the start is chosen so that
// no `at` is ever later than the wall clock (the server refuses crossings in its
// future). This module does not compute standings: the server does, and the
// end-to-end test (tests/e2e/relay.test.mjs) checks them with its own code.
//
// `ws` comes from tests/e2e/node_modules (cd tests/e2e && npm ci).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/e2e/package.json', import.meta.url));

function loadWs() {
  try {
    return require('ws');
  } catch {
    throw new Error('relay-sim needs the ws package: run `cd tests/e2e && npm ci` first');
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ------------------------------------------------------------------ */
/* randomness (seeded, so a rehearsal can be repeated)                 */

export function makeRng(seed) {
  let a = (Number(seed) >>> 0) ^ 0x9e3779b9;
  const next = () => {
    // mulberry32
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), // inclusive
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
  };
}

/* ------------------------------------------------------------------ */
/* time                                                                */

const pad = (n, w = 2) => String(n).padStart(w, '0');

/* The UTC offset (minutes) of an RFC 3339 time; 0 for Z. */
export function offsetOf(rfc3339) {
  const m = /([+-])(\d\d):(\d\d)$/.exec(rfc3339 || '');
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
}

/* An instant written at an offset, to the millisecond: 2026-12-12T09:41:07.123+08:00. */
export function fmtTime(ms, offMin = 0) {
  const local = new Date(ms + offMin * 60000).toISOString().slice(0, 23);
  if (offMin === 0) return `${local}Z`;
  const a = Math.abs(offMin);
  return `${local}${offMin < 0 ? '-' : '+'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/* h:mm:ss for a duration in ms. */
export function fmtElapsed(ms) {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

/* ------------------------------------------------------------------ */
/* tokens (HS256 compact JWS, as build/fitsync-token mints them)       */

export function mintToken(secret, { sub, role, event, ttl = 12 * 3600 }) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = { sub, role, exp: Math.floor(Date.now() / 1000) + ttl };
  if (event) body.event = event;
  const signing = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(body)}`;
  return `${signing}.${crypto.createHmac('sha256', secret).update(signing).digest('base64url')}`;
}

/* The server's secret the way fitsync-token finds it: explicit, else FITSYNC_TOKEN_SECRET, else DIR/token.secret. */
export function findSecret({ secret, dataDir = 'data' } = {}) {
  if (secret) return secret;
  if (process.env.FITSYNC_TOKEN_SECRET) return process.env.FITSYNC_TOKEN_SECRET;
  const file = path.join(dataDir, 'token.secret');
  try {
    const s = fs.readFileSync(file, 'utf8').split(/\r?\n/)[0];
    if (s.length >= 16) return s;
  } catch {}
  throw new Error(
    `no token secret: pass --secret, set FITSYNC_TOKEN_SECRET, or --data-dir DIR with DIR/token.secret ` +
      `(or pass a host token with --token)`,
  );
}

/* ------------------------------------------------------------------ */
/* the event file                                                      */

/* Reads an event.create body (config/events/*.json). The event id is "event" (or "id"). */
export function loadEventFile(file) {
  const def = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!def.event && typeof def.id === 'string') {
    def.event = def.id;
    delete def.id;
  }
  delete def.type;
  for (const k of ['event', 'name', 'starts_at', 'duration_s', 'lap_m', 'categories'])
    if (def[k] === undefined) throw new Error(`${file}: the event needs "${k}"`);
  return def;
}

/* ------------------------------------------------------------------ */
/* the plan                                                            */

const PLACES = [
  ...'Harbour,Northpoint,Riverside,Hillcrest,Lakeside,Westgate,Eastbay,Kingsway,Parkview,Stonebridge'.split(','),
  ...'Greenfield,Bayview,Oakwood,Southfield,Seaview,Millbrook,Cedar Hill,Fairmount,Ashford,Lighthouse'.split(','),
];
const SURNAMES =
  "Chan,Wong,Lee,Cheung,Lau,Ng,Ho,Leung,Smith,O'Brien,Patel,Garcia,Kumar,Tanaka,Nguyen,Fischer,Rossi,Silva".split(',');
const DOGS = 'Biscuit,Mochi,Rex,Luna,Pepper,Bao,Max,Daisy,Toffee,Rocky,Nala,Dumpling'.split(',');
const NAMERS = {
  'disciplined-services': (r) =>
    `${r.pick(PLACES)} ${r.pick(['Fire Station', 'Police District', 'Customs Team', 'Ambulance Depot', 'Immigration Runners', 'Correctional Services'])}`,
  'sports-organisations': (r) =>
    `${r.pick(PLACES)} ${r.pick(['Athletic Club', 'Harriers', 'Triathlon Club', 'Running Club', 'Rugby Club', 'Swim Squad'])}`,
  'open-competitive': (r) =>
    `${r.pick(PLACES)} ${r.pick(['Striders', 'Pacers', 'Road Runners', 'Flyers', 'Gazelles'])}`,
  'primary-school': (r) => `${r.pick(PLACES)} Primary School`,
  'secondary-school': (r) => `${r.pick(PLACES)} ${r.pick(['Secondary School', 'College', 'Academy'])}`,
  'parent-child': (r) => `The ${r.pick(SURNAMES)} Family`,
  inclusive: (r) =>
    `${r.pick(PLACES)} ${r.pick(['All Abilities', 'Wheels & Heels', 'Together Runners', 'Buddy Club'])}`,
  'open-charity': (r) =>
    `${r.pick(PLACES)} ${r.pick(['Bank Volunteers', 'Hospital Staff', 'Book Club', 'Rotary', 'Bakery Crew', 'Choir'])}`,
};
const dogName = (r) => `${r.pick(DOGS)} & ${r.pick(['Sam', 'Mei', 'Alex', 'Priya', 'Jo', 'Ken', 'Ana', 'Tom'])}`;

const VOID_REASONS = [
  'runner cut the course at the far bend (marshal report)',
  'bib scanned from the spectator side of the line',
  'two runners of the team on the course at once',
];
const RESTORE_REASONS = ['video shows the lap was run in full', 'marshal report withdrawn after review'];

/*
 * opts: teams (250), durationS (default def.duration_s), seed, marshals (4),
 * doubleScanRate (0.03), offlineMarshalMinutes (20; 0 = none), offlineAt
 * (fraction of the event when that marshal drops out, 0.45), lateLaps (5),
 * corrections (voids, 2), restores (of those voids, 1), unknownBibs (2),
 * paceS ([90, 180] seconds per 400 m), awards (names).
 * Returns the plan, with times in ms relative to the official start.
 */
export function generatePlan(def, opts = {}) {
  const o = {
    teams: 250,
    durationS: def.duration_s,
    seed: 1,
    marshals: 4,
    doubleScanRate: 0.03,
    offlineMarshalMinutes: 20,
    offlineAt: 0.45,
    lateLaps: 5,
    corrections: 2,
    restores: 1,
    unknownBibs: 2,
    paceS: [90, 180],
    awards: ['Most creative costume', 'Best team spirit'],
    ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
  };
  const r = makeRng(o.seed);
  const durMs = o.durationS * 1000;
  if (!(durMs >= 60000)) throw new Error('the event needs a duration of at least 60 s');
  if (!(def.lap_m > 0)) throw new Error('the event needs lap_m > 0');
  const lapM = def.lap_m;
  const minLapMs = (def.min_lap_s || 0) * 1000;
  const cats = def.categories.map((c) => c.id);
  if (o.teams < 1 || o.teams > 8000) throw new Error('teams must be 1..8000');
  if (o.marshals < 1) throw new Error('at least one marshal');

  // Teams: every category gets at least one, the rest at random.
  const teams = [];
  const names = new Set();
  for (let i = 0; i < o.teams; i++) {
    const category = i < cats.length ? cats[i] : r.pick(cats);
    const namer = NAMERS[category] || (/dog/.test(category) ? dogName : (rr) => `${rr.pick(PLACES)} Team`);
    let name = namer(r);
    for (let k = 2; names.has(name); k++) name = `${namer(r)} ${k}`;
    names.add(name);
    teams.push({ bib: String(101 + i), name, category });
  }

  const marshals = Array.from({ length: o.marshals }, (_, i) => `m${i + 1}`);
  const offline =
    o.offlineMarshalMinutes > 0
      ? {
          marshal: marshals[marshals.length > 1 ? 1 : 0],
          from: Math.round(durMs * o.offlineAt),
          to: Math.round(durMs * o.offlineAt) + o.offlineMarshalMinutes * 60000,
        }
      : null;

  // Crossings. Runners leave the line at the start; a team's crossing ends a lap.
  const crossings = [];
  const seq = Object.fromEntries(marshals.map((m) => [m, 0]));
  const scan = (bib, t, kind) => {
    const marshal = r.pick(marshals);
    const c = { client_id: `${marshal}-${String(++seq[marshal]).padStart(6, '0')}`, bib, t, marshal, kind };
    crossings.push(c);
    return c;
  };
  let fastestLapMs = Infinity;
  const lateTeams = new Set();
  while (lateTeams.size < Math.min(o.lateLaps, teams.length)) lateTeams.add(r.int(0, teams.length - 1));
  teams.forEach((team, ti) => {
    const pace = r.uniform(o.paceS[0], o.paceS[1]) * (lapM / 400) * 1000; // this team's typical lap, ms
    let t = 0;
    for (;;) {
      const lap = Math.round(pace * r.uniform(0.9, 1.15));
      fastestLapMs = Math.min(fastestLapMs, lap);
      t += lap;
      if (t > durMs) {
        // The runner on the course at the horn finishes the lap: a crossing after the cut-off.
        if (lateTeams.has(ti)) scan(team.bib, t, 'late');
        break;
      }
      const c = scan(team.bib, t, 'lap');
      if (r.chance(o.doubleScanRate)) scan(team.bib, t + r.int(1000, 8000), 'double').of = c.client_id;
    }
  });
  // A marshal's typo: a bib no team wears (refused for that crossing only).
  for (let k = 0; k < o.unknownBibs; k++) scan(String(9001 + k), r.int(60000, durMs), 'unknown');
  crossings.sort((a, b) => a.t - b.t || (a.client_id < b.client_id ? -1 : 1));

  // Corrections: voids of real laps during the event (ones with a double scan
  // first: voiding those makes the double count), then restores after the cut-off.
  const corrections = [];
  const candidates = crossings.filter(
    (c) => c.kind === 'lap' && c.t > durMs * 0.1 && c.t < durMs * 0.6 && (!offline || c.marshal !== offline.marshal),
  );
  const withDouble = new Set(crossings.filter((c) => c.kind === 'double').map((c) => c.of));
  const used = new Set();
  for (let k = 0; k < o.corrections && candidates.length; k++) {
    const pool = candidates.filter((c) => !used.has(c.bib));
    const doubled = pool.filter((c) => withDouble.has(c.client_id));
    const target = k === 0 && doubled.length ? r.pick(doubled) : r.pick(pool.length ? pool : candidates);
    used.add(target.bib);
    corrections.push({
      op: 'lap.void',
      client_id: target.client_id,
      bib: target.bib,
      reason: VOID_REASONS[k % VOID_REASONS.length],
      t: Math.max(target.t + 10 * 60000, Math.round(durMs * (0.65 + (0.25 * k) / Math.max(1, o.corrections)))),
    });
  }
  corrections.sort((a, b) => a.t - b.t);
  for (let k = 0; k < Math.min(o.restores, corrections.length); k++) {
    const v = corrections[k];
    corrections.push({
      op: 'lap.restore',
      client_id: v.client_id,
      bib: v.bib,
      reason: RESTORE_REASONS[k % RESTORE_REASONS.length],
      t: durMs + 1000 * (k + 1),
    });
  }

  const awards = o.awards.map((award) => ({ bib: r.pick(teams).bib, award }));
  const lastT = crossings.length ? crossings[crossings.length - 1].t : durMs;
  return {
    durMs,
    lapM,
    minLapMs,
    fastestLapMs,
    teams,
    marshals,
    offline,
    crossings,
    corrections,
    awards,
    // The simulated time the run covers: the last crossing, correction or late upload.
    endT: Math.max(durMs, lastT, offline ? offline.to : 0, ...corrections.map((c) => c.t)),
  };
}

/* The teams as team.import CSV (RFC 4180 quoting), header first. */
export function teamsCsv(teams) {
  const q = (s) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  return ['bib,name,category', ...teams.map((t) => `${t.bib},${q(t.name)},${t.category}`)].join('\n') + '\n';
}

/* ------------------------------------------------------------------ */
/* a small fitsync.v1 client                                           */

let nextId = 0;

export class Conn {
  static open(url, { timeout = 5000, onPush } = {}) {
    const WebSocket = loadWs();
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'fitsync.v1', { handshakeTimeout: timeout });
      ws.once('open', () => resolve(new Conn(ws, onPush)));
      ws.once('error', reject);
    });
  }

  constructor(ws, onPush) {
    this.ws = ws;
    this.onPush = onPush;
    this.waiting = new Map();
    this.closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        for (const w of this.waiting.values()) w.reject(new Error(`connection closed (${code})`));
        this.waiting.clear();
        resolve(code);
      }),
    );
    ws.on('error', () => {});
    ws.on('message', (data) => {
      let m;
      try {
        m = JSON.parse(data.toString('utf8'));
      } catch {
        return;
      }
      const w = m.re !== undefined && this.waiting.get(m.re);
      if (w) {
        this.waiting.delete(m.re);
        w.resolve(m);
      } else if (m.re === undefined && this.onPush) this.onPush(m);
    });
  }

  /* One request, one reply (which may be an error reply). */
  send(msg, timeout = 15000) {
    const id = `s${++nextId}`;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`timed out after ${timeout} ms waiting for the reply to ${msg.type}`));
      }, timeout);
      this.waiting.set(id, {
        resolve: (m) => (clearTimeout(t), resolve(m)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      this.ws.send(JSON.stringify({ ...msg, id }), (e) => {
        if (e && this.waiting.has(id)) {
          this.waiting.delete(id);
          clearTimeout(t);
          reject(e);
        }
      });
    });
  }

  /* Like send, but waits and resends on rate_limited and retryable errors (nothing was applied). */
  async request(msg, { timeout = 15000, tries = 8 } = {}) {
    for (let i = 1; ; i++) {
      const r = await this.send(msg, timeout);
      const again = r.type === 'error' && (r.code === 'rate_limited' || r.retryable === true);
      if (!again || i >= tries) return r;
      await sleep(r.retry_after_ms ?? Math.min(2000, 100 * 2 ** i));
    }
  }

  close() {
    try {
      this.ws.close(1000);
    } catch {}
    return Promise.race([this.closed, sleep(1000)]);
  }
}

function assertReply(r, what) {
  if (r.type === 'error') throw new Error(`${what}: ${r.code}${r.field ? ` (${r.field})` : ''}: ${r.message || ''}`);
  return r;
}

/* Sends msg and throws unless the reply is not an error. */
async function must(conn, msg, what) {
  return assertReply(await conn.request(msg), what);
}

/* ------------------------------------------------------------------ */
/* the run                                                             */

/*
 * opts: url (ws://host:port/), def (an event.create body, loadEventFile),
 * suffix (appended to the event id), secret | hostToken, speed (120),
 * tickMs (100), batchMax (200), onReady(info) (awaited after the event is
 * started, before the first crossing; info = {eventId, startMs, plan,
 * hostToken}), onPush(msg) (pushes on any of the sim's connections),
 * readFlags (read every crossing's final flag with event.laps),
 * progressEveryMs, log(line), and generatePlan's options.
 * Returns the dump (see the end of the function).
 */
export async function runRelay(opts) {
  const o = { speed: 120, tickMs: 100, batchMax: 200, suffix: '', log: () => {}, ...opts };
  const def = { ...o.def };
  const eventId = `${def.event}${o.suffix}`;
  if (!/^[a-z0-9-]{1,40}$/.test(eventId)) throw new Error(`event id "${eventId}" is not a slug of 1..40 [a-z0-9-]`);
  if (o.durationS) def.duration_s = o.durationS;
  const plan = generatePlan(def, o);
  if (plan.minLapMs >= plan.fastestLapMs)
    o.log(
      `warning: min_lap_s ${plan.minLapMs / 1000} is not below the fastest generated lap ` +
        `(${(plan.fastestLapMs / 1000).toFixed(1)} s): real laps will be flagged as double scans`,
    );
  const offMin = offsetOf(def.starts_at);
  const wall0 = Date.now();
  const hostToken =
    o.hostToken || mintToken(o.secret, { sub: 'host-sim', role: 'host', event: eventId, ttl: 12 * 3600 });

  const conns = [];
  const open = async (token, device) => {
    const c = await Conn.open(o.url, { onPush: o.onPush });
    conns.push(c);
    const w = await c.request({ type: 'hello', token, device_id: device });
    if (w.type !== 'welcome') throw new Error(`hello (${device}): ${w.code}: ${w.message || ''}`);
    c.welcome = w;
    return c;
  };

  try {
    const host = await open(hostToken, 'relay-sim-host');
    const batchMax = Math.min(o.batchMax, host.welcome.limits?.max_batch ?? 500);

    // The simulated event started so long ago that even its last crossing,
    // sent at the sped-up clock, is in the past: S + (wall - T0) x speed <= wall.
    const tail = plan.endT; // ms of simulated time the run covers
    const startMs = Math.floor((wall0 - tail * (1 - 1 / o.speed) - 60000) / 1000) * 1000;
    const startAt = fmtTime(startMs, offMin);
    const body = { ...def, event: eventId, starts_at: startAt, duration_s: plan.durMs / 1000 };
    const cr = await host.request({ type: 'event.create', ...body });
    if (cr.type === 'error' && cr.code === 'conflict')
      throw new Error(
        `event.create: an event "${eventId}" already exists; rehearse under another id (--unique or --suffix)`,
      );
    if (cr.type === 'error' && cr.code === 'forbidden')
      throw new Error(
        `event.create: the host token is not for event "${eventId}" (a --token must name exactly this id)`,
      );
    const created = assertReply(cr, 'event.create');
    o.log(`event ${eventId} ${created.status}: ${def.name}, ${plan.durMs / 1000} s, laps of ${plan.lapM} m`);

    // Teams, in chunks below the server's batch limit (the header counts as a line).
    const imported = [];
    const chunk = Math.max(1, Math.min(200, batchMax - 1));
    for (let i = 0; i < plan.teams.length; i += chunk) {
      const part = plan.teams.slice(i, i + chunk);
      const r = await must(host, { type: 'team.import', event: eventId, csv: teamsCsv(part) }, 'team.import');
      imported.push(...r.results);
      if (r.rejected)
        throw new Error(
          `team.import rejected ${r.rejected} rows: ${JSON.stringify(r.results.filter((x) => x.status === 'error'))}`,
        );
    }
    o.log(
      `imported ${plan.teams.length} teams in ${plan.teams.length > chunk ? Math.ceil(plan.teams.length / chunk) : 1} team.import message(s)`,
    );

    // Marshals: tokens from the host (marshal.token), one connection each.
    const mconns = {};
    for (const m of plan.marshals) {
      const t = await must(host, { type: 'marshal.token', event: eventId, marshal: m }, 'marshal.token');
      mconns[m] = await open(t.token, `relay-sim-${m}`);
    }
    const started = await must(host, { type: 'event.start', event: eventId, at: startAt }, 'event.start');
    o.log(`started at ${started.started_at} (simulated; speed x${o.speed}), ${plan.marshals.length} marshals`);

    // Absolute times from here on.
    for (const c of plan.crossings) {
      c.at_ms = startMs + c.t;
      c.at = fmtTime(c.at_ms, offMin);
    }
    if (o.onReady) await o.onReady({ eventId, startMs, plan, hostToken });

    const T0 = Date.now();
    const simNow = () => startMs + (Date.now() - T0) * o.speed;
    const batches = [];
    let failure = null;

    const marshalLoop = async (m) => {
      const queue = plan.crossings.filter((c) => c.marshal === m);
      const off = plan.offline && plan.offline.marshal === m ? plan.offline : null;
      let i = 0;
      while (i < queue.length && !failure) {
        await sleep(o.tickMs);
        const now = Math.min(simNow(), Date.now());
        const rel = now - startMs;
        if (off && rel >= off.from && rel < off.to) continue; // offline: scans pile up on the device
        let j = i;
        while (j < queue.length && queue[j].at_ms <= now) j++;
        const wasOffline = off && rel >= off.to && queue.slice(i, j).some((c) => c.t >= off.from && c.t < off.to);
        for (let k = i; k < j; k += batchMax) {
          const items = queue.slice(k, Math.min(j, k + batchMax));
          const laps = items.map((c) => ({ client_id: c.client_id, bib: c.bib, at: c.at }));
          const r = await mconns[m].request({ type: 'lap.record', event: eventId, laps });
          if (r.type !== 'lap.record') throw new Error(`lap.record (${m}): ${r.code}: ${r.message || ''}`);
          // An item is {index, client_id, bib, status} or an error {index, status: "error", code, field}.
          const statuses = r.results.map((x) => (x.code ? `error:${x.code}` : x.status));
          r.results.forEach((x, n) => {
            const c = items[n];
            if (x.code) c.error = x.code;
            else c.sent_status = x.status;
          });
          batches.push({ marshal: m, late: !!wasOffline, sim_ms: now - startMs, laps, statuses });
          if (wasOffline) off.uploaded = (off.uploaded || 0) + items.length;
        }
        if (wasOffline && !off.logged) {
          off.logged = true;
          o.log(
            `marshal ${m} back online after ${(off.to - off.from) / 60000} min: uploaded ${off.uploaded} queued crossings`,
          );
        }
        i = j;
      }
    };

    const hostLoop = async () => {
      for (const c of plan.corrections) {
        while (simNow() - startMs < c.t && !failure) await sleep(o.tickMs);
        if (failure) return;
        // The lap may still be on its way from a marshal: retry not_found briefly.
        let r;
        for (let k = 0; k < 50; k++) {
          r = await host.request({ type: c.op, event: eventId, client_id: c.client_id, reason: c.reason });
          if (!(r.type === 'error' && r.code === 'not_found')) break;
          await sleep(100);
        }
        if (r.type === 'error') throw new Error(`${c.op} ${c.client_id}: ${r.code}: ${r.message || ''}`);
        c.status = r.status;
        o.log(`${c.op} ${c.client_id} (bib ${c.bib}, "${c.reason}") -> ${r.status}`);
      }
    };

    const guard = (p) => p.catch((e) => (failure = failure || e));
    let progress = null;
    if (o.progressEveryMs)
      progress = setInterval(() => {
        const sent = plan.crossings.filter((c) => c.sent_status || c.error).length;
        o.log(
          `  ${fmtElapsed(Math.max(0, simNow() - startMs))} simulated: ${sent}/${plan.crossings.length} crossings sent`,
        );
      }, o.progressEveryMs);
    await Promise.all([...plan.marshals.map((m) => guard(marshalLoop(m))), guard(hostLoop())]);
    if (progress) clearInterval(progress);
    if (failure) throw failure;
    const runWallMs = Date.now() - T0;

    for (const a of plan.awards) {
      const r = await must(host, { type: 'award.assign', event: eventId, bib: a.bib, award: a.award }, 'award.assign');
      a.status = r.status;
    }
    await must(host, { type: 'event.finish', event: eventId }, 'event.finish');
    const results = (await must(host, { type: 'event.results', event: eventId }, 'event.results')).results;
    const audit = (await must(host, { type: 'event.audit', event: eventId }, 'event.audit')).entries;

    // Optionally every crossing's final flag (event.laps per team; slow under the default rate limit).
    let finalFlags = null;
    if (o.readFlags) {
      finalFlags = {};
      const flagOf = new Map();
      for (const t of plan.teams) {
        const r = await must(host, { type: 'event.laps', event: eventId, bib: t.bib }, 'event.laps');
        for (const l of r.laps) {
          flagOf.set(l.client_id, l.status);
          finalFlags[l.status] = (finalFlags[l.status] || 0) + 1;
        }
      }
      for (const c of plan.crossings) if (flagOf.has(c.client_id)) c.final_status = flagOf.get(c.client_id);
    }

    const count = (pred) => plan.crossings.filter(pred).length;
    const stats = {
      teams: plan.teams.length,
      crossings: plan.crossings.length,
      double_scans_generated: count((c) => c.kind === 'double'),
      late_generated: count((c) => c.kind === 'late'),
      rejected: count((c) => c.error),
      status_at_receipt: plan.crossings.reduce((acc, c) => {
        const k = c.error ? `refused (${c.error})` : c.sent_status;
        acc[k] = (acc[k] || 0) + 1;
        return acc;
      }, {}),
      batches: batches.length,
      offline_uploaded: plan.offline ? plan.offline.uploaded || 0 : 0,
      laps_counted: results.overall.reduce((s, t) => s + t.laps, 0),
      final_flags: finalFlags,
      run_wall_ms: runWallMs,
      total_wall_ms: Date.now() - wall0,
    };
    return {
      event: {
        id: eventId,
        definition: body,
        start_ms: startMs,
        started_at: started.started_at,
        duration_s: plan.durMs / 1000,
        lap_m: plan.lapM,
        min_lap_s: plan.minLapMs / 1000,
        speed: o.speed,
      },
      teams: plan.teams,
      marshals: plan.marshals,
      offline: plan.offline && {
        marshal: plan.offline.marshal,
        from_ms: startMs + plan.offline.from,
        to_ms: startMs + plan.offline.to,
        uploaded: plan.offline.uploaded || 0,
      },
      crossings: plan.crossings.map((c) => ({
        client_id: c.client_id,
        bib: c.bib,
        at: c.at,
        at_ms: c.at_ms,
        marshal: c.marshal,
        kind: c.kind,
        ...(c.error ? { error: c.error } : { status_at_receipt: c.sent_status }),
        ...(c.final_status ? { final_status: c.final_status } : {}),
      })),
      corrections: plan.corrections.map(({ op, client_id, bib, reason, status }) => ({
        op,
        client_id,
        bib,
        reason,
        status,
      })),
      awards: plan.awards,
      batches,
      results,
      audit,
      stats,
    };
  } finally {
    await Promise.all(conns.map((c) => c.close()));
  }
}

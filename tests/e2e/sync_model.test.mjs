// sync_model.test.mjs: a model-based test of offline-first sync.
//
// Two users, each with two devices (a phone and a watch, two connections to
// one fitsyncd), generate thousands of operations from a seeded PRNG: new
// sessions, activity.update with the device's known base_rev, activity.delete
// with or without base_rev, summary uploads and summary deletes. Each device
// works on its OWN client_ids and its own summary source, in a sensible order
// for one device (it only edits what it created, with the rev it last saw).
//
// Delivery is hostile, like phones that were offline for days: in every
// round the ready messages of all four devices are shuffled together, some
// are held back for later rounds, some are sent twice at once, and some that
// were already acknowledged are sent again later (a retry after a lost
// reply). When the server answers not_found or conflict because a
// predecessor (the upload, or the previous edit) has not arrived yet, the op
// goes back in the queue, as a real offline client would retry it. The run
// ends when every op is acknowledged.
//
// Then the server's state is compared with a simple model computed here,
// independently of the C and Lua code:
//   - a session's final content is what its device last sent (merged as
//     activity.update merges); sessions deleted by their device are gone;
//   - a summary (date, source) is simulated in its device's order: the
//     newest recorded_at wins (ties: the larger JSON text, keys sorted); a
//     delete leaves a tombstone at the recorded_at it removed;
//   - per local day and intensity, minutes = the union of the live sessions'
//     minutes, minute by minute, the highest intensity winning a minute (on
//     the local date of the session's own offset); then the larger of that
//     and each summary of the day; a week is the sum of its days;
//     equivalent = moderate + 2 x vigorous.
// Checked: history.get and week.get for every week touched (each day and the
// totals), the change log replayed from "0-0" by a fresh device (every
// session's content and rev, every summary), account.export, and that every
// change push went to exactly the user's other devices (no cross-talk).
//
// Summary deletes are not conditional (summary.delete has no base), so a
// device keeps its ops on one (date, source) in order across a delete: the
// delete is sent once the earlier ops on that summary are acknowledged, and
// later snapshots once the delete is. Everything else is freely reordered.
//
// Dates are fixed (2025-11-17 .. 2026-02-08, across an ISO year boundary),
// so a seed replays the same operations on any day; the server runs with
// FITSYNC_MAX_AGE_WEEKS=0 (no acceptance window) and a rate limit high
// enough not to interfere.
//
// Environment:
//   FITSYNC_MODEL_SEED   the seed (an unsigned 32-bit integer, or "random");
//                        default 20261130. Printed at the start: replay a
//                        failure with the same seed.
//   FITSYNC_MODEL_OPS    operations per device of the first user (default
//                        4000; the second user's devices do half that).
//                        The default run is 12000 operations and takes a
//                        few seconds.
//   FITSYNC_MODEL_FULL_UPDATES=1  updates send every field (null for absent
//                        ones) instead of only the changed ones; a
//                        diagnostic: it makes the result independent of what
//                        the server merges onto.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/sync_model.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer,
  withTimeout,
  waitFor,
  SOURCE_DIR,
  MIN,
  DAY,
  rfc3339,
  parseRfc3339,
  localDate,
  addDays,
  at,
  isoWeek,
  weekRange,
} from './lib.mjs';

/* ------------------------------------------------------------------ */
/* parameters                                                          */

const SEED_ENV = process.env.FITSYNC_MODEL_SEED;
const SEED =
  SEED_ENV === 'random'
    ? crypto.randomBytes(4).readUInt32BE(0)
    : SEED_ENV !== undefined && SEED_ENV !== ''
      ? Number(SEED_ENV) >>> 0
      : 20261130;
const OPS = Number(process.env.FITSYNC_MODEL_OPS || 4000);
const FULL_UPDATES = process.env.FITSYNC_MODEL_FULL_UPDATES === '1';

const FIRST_DAY = '2025-11-17'; // a Monday: 2025-W47
const NDAYS = 84; //               .. Sunday 2026-02-08: 2026-W06
const OFFSETS = [8 * 60, 5 * 60 + 45, -5 * 60, 0, 9 * 60 + 30, -3 * 60 - 30, 14 * 60, -10 * 60];

const P_DEFER = 0.15; //        a ready op is held back 1..6 rounds
const P_DUP = 0.12; //          a message is sent twice in the same round
const P_LATE_DUP = 0.4; //      per device and round, up to 3 times: an acknowledged op is sent again

/* ------------------------------------------------------------------ */
/* the PRNG (sfc32, seeded through splitmix32)                         */

function makeRng(seed) {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  const rng = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), // inclusive
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
    shuffle(arr) {
      for (let i = arr.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [arr[i], arr[j]] = [arr[j], arr[i]];
      }
      return arr;
    },
    fork: () => makeRng(split()),
  };
  return rng;
}

/* ------------------------------------------------------------------ */
/* intensity of a session (config/met.json, read here)                 */

const MET = new Map(
  JSON.parse(fs.readFileSync(path.join(SOURCE_DIR, 'config', 'met.json'), 'utf8')).activities.map((a) => [a.type, a.met])
);
const TYPES = ['running', 'walking', 'yoga', 'cycling', 'pilates', 'stretching', 'hiking', 'swimming'];
const LEVEL = { light: 1, moderate: 2, vigorous: 3 };
const metLevel = (met) => (met >= 6 ? 3 : met >= 3 ? 2 : 1);
function levelOf(doc) {
  if (doc.intensity !== undefined) return LEVEL[doc.intensity];
  if (doc.met !== undefined) return metLevel(doc.met);
  return metLevel(MET.get(doc.type));
}
function intervalOf(doc) {
  const s = parseRfc3339(doc.start);
  const end = doc.end !== undefined ? parseRfc3339(doc.end).ms : s.ms + doc.duration_s * 1000;
  return { start: s.ms, end, off: s.off };
}

/* activity.update's merge: the sent fields onto the stored item; null removes; end and duration_s exclude each other. */
function mergeUpdate(doc, changes) {
  const m = { ...doc };
  for (const [k, v] of Object.entries(changes)) {
    if (v === null) delete m[k];
    else m[k] = v;
    if (k === 'end' && v !== null) delete m.duration_s;
    if (k === 'duration_s' && v !== null) delete m.end;
  }
  return m;
}

/* The JSON text the server compares summaries by: compact, keys sorted. */
const sortedJson = (o) => JSON.stringify(Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));

/* ------------------------------------------------------------------ */
/* generating one device's operations                                  */

/*
 * A device's ops, in its own order. Each op: {seq, dev, kind, key, msg, ...}
 * kind: upload | update | delete | sput | sdel. The device tracks what it
 * believes (its items and revs), as an app would.
 */
function generateDevice(rng, user, dev, n, anchors) {
  const ops = [];
  const items = new Map(); // cid -> {doc, rev, deleted, chain: [ops]}
  const live = []; // cids not deleted
  const sums = new Map(); // "date|source" -> {ops: [], mode, k, hasPut}
  const source = dev;
  let ncid = 0;

  const newStart = () => {
    const off = rng.pick(OFFSETS);
    if (anchors.length && rng.chance(0.35)) {
      // near another session of this user (phone and watch recording the same thing)
      const a = rng.pick(anchors);
      return { ms: a + rng.int(-40, 40) * MIN, off: rng.chance(0.7) ? off : 8 * 60 };
    }
    const date = addDays(FIRST_DAY, rng.int(0, NDAYS - 1));
    let hh, mm;
    if (rng.chance(0.25)) {
      hh = rng.int(21, 23); // late: many cross local midnight (Sundays: the week)
      mm = rng.int(0, 59);
    } else {
      hh = rng.int(5, 20);
      mm = rng.int(0, 59);
    }
    const ms = at(date, hh, mm, off);
    if (rng.chance(0.2)) anchors.push(ms);
    return { ms, off };
  };
  const newMinutes = () => (rng.chance(0.15) ? rng.int(120, 420) : rng.int(1, 120));
  const intensityFields = () => {
    const r = rng.next();
    if (r < 0.4) return { intensity: rng.pick(['light', 'moderate', 'vigorous']) };
    if (r < 0.55) return { met: rng.pick([2, 2.9, 3, 4.5, 5.9, 6, 8.5]) };
    return {};
  };

  const push = (op) => {
    op.seq = ops.length;
    op.dev = dev;
    op.user = user;
    ops.push(op);
    return op;
  };

  const upload = () => {
    const cid = `${user}.${dev}.${++ncid}`;
    const st = newStart();
    const minutes = newMinutes();
    const doc = { client_id: cid, type: rng.pick(TYPES), start: rfc3339(st.ms, st.off, rng.chance(0.2)) };
    if (rng.chance(0.3)) doc.end = rfc3339(st.ms + minutes * MIN, rng.pick(OFFSETS));
    else doc.duration_s = minutes * 60;
    Object.assign(doc, intensityFields());
    if (rng.chance(0.3)) doc.steps = rng.int(0, 9000);
    const it = { doc, rev: 1, deleted: false, chain: [] };
    items.set(cid, it);
    live.push(cid);
    const op = push({ kind: 'upload', key: cid, doc, msg: { type: 'activity.upload', activities: [doc] } });
    it.chain.push(op);
    op.chain = it.chain;
  };

  const update = () => {
    const cid = rng.pick(live);
    const it = items.get(cid);
    const cur = it.doc;
    const changes = {};
    // 1..3 aspects; a new start first, so that a new end is computed from it. (The
    // activity's type cannot be changed: in activity.update "type" is the message type.)
    const ORDER = ['start', 'length', 'intensity', 'steps'];
    const what = rng.shuffle([...ORDER]).slice(0, rng.int(1, 3)).sort((a, b) => ORDER.indexOf(a) - ORDER.indexOf(b));
    for (const w of what) {
      if (w === 'start') {
        const st = newStart();
        changes.start = rfc3339(st.ms, st.off, rng.chance(0.2));
        if (cur.end !== undefined && !what.includes('length')) changes.duration_s = newMinutes() * 60;
      } else if (w === 'length') {
        const start = parseRfc3339(changes.start ?? cur.start).ms;
        const minutes = newMinutes();
        if (rng.chance(0.4)) changes.end = rfc3339(start + minutes * MIN, rng.pick(OFFSETS));
        else changes.duration_s = minutes * 60;
      } else if (w === 'intensity') {
        const r = rng.next();
        if (r < 0.35) changes.intensity = rng.pick(['light', 'moderate', 'vigorous']);
        else if (r < 0.55) changes.intensity = null;
        else if (r < 0.8) changes.met = rng.pick([2, 3, 4.5, 6, 8.5]);
        else changes.met = null;
      } else {
        changes.steps = rng.chance(0.3) ? null : rng.int(0, 9000);
      }
    }
    const doc = mergeUpdate(cur, changes);
    let send = changes;
    if (FULL_UPDATES) {
      send = {};
      for (const k of ['start', 'duration_s', 'end', 'intensity', 'met', 'steps']) send[k] = doc[k] ?? null;
    }
    const op = push({
      kind: 'update',
      key: cid,
      base: it.rev,
      doc,
      msg: { type: 'activity.update', client_id: cid, base_rev: it.rev, ...send },
    });
    it.doc = doc;
    it.rev += 1;
    op.rev = it.rev;
    it.chain.push(op);
    op.chain = it.chain;
  };

  const del = () => {
    const i = rng.int(0, live.length - 1);
    const cid = live[i];
    live.splice(i, 1);
    const it = items.get(cid);
    const withBase = rng.chance(0.5);
    const msg = { type: 'activity.delete', client_id: cid };
    if (withBase) msg.base_rev = it.rev;
    const op = push({ kind: 'delete', key: cid, base: withBase ? it.rev : undefined, msg });
    it.deleted = true;
    it.rev += 1;
    op.rev = it.rev;
    it.chain.push(op);
    op.chain = it.chain;
  };

  const sput = () => {
    let key;
    const keys = [...sums.keys()];
    if (keys.length && rng.chance(0.6)) key = rng.pick(keys);
    else key = `${addDays(FIRST_DAY, rng.int(0, NDAYS - 1))}|${source}`;
    if (!sums.has(key)) sums.set(key, { ops: [], mode: rng.chance(0.5) ? 'increasing' : 'random', k: 0, live: false });
    const s = sums.get(key);
    const date = key.split('|')[0];
    s.k = s.mode === 'increasing' ? s.k + rng.int(1, 3) : rng.int(1, 8);
    const off = rng.pick([8 * 60, 5 * 60 + 45, -5 * 60]);
    // recorded_at: from the start of the day on, in 20-minute steps (ties are frequent in "random" mode)
    const rec = at(date, 0, 0, off) + s.k * 20 * MIN;
    const mo = rng.int(0, 90), vi = rng.int(0, 50);
    const item = { date, utc_offset: rfc3339(0, off).slice(19), source, recorded_at: rfc3339(rec, off), moderate_min: mo, vigorous_min: vi };
    if (rng.chance(0.5)) item.light_min = rng.int(0, 200);
    if (rng.chance(0.3)) item.steps = rng.int(0, 20000);
    const op = push({ kind: 'sput', key, item, rec, text: sortedJson(item), msg: { type: 'summary.upload', summaries: [item] } });
    op.keyPos = s.ops.length;
    s.ops.push(op);
    op.keyOps = s.ops;
    s.live = true;
  };

  const sdel = () => {
    const keys = [...sums.entries()].filter(([, s]) => s.live).map(([k]) => k);
    const key = rng.pick(keys);
    const s = sums.get(key);
    const [date] = key.split('|');
    const op = push({ kind: 'sdel', key, msg: { type: 'summary.delete', date, source } });
    op.keyPos = s.ops.length;
    s.ops.push(op);
    op.keyOps = s.ops;
    s.live = false;
  };

  while (ops.length < n) {
    const r = rng.next();
    if (live.length < 4 || r < 0.34) upload();
    else if (r < 0.6) update();
    else if (r < 0.7) del();
    else if (r < 0.93 || ![...sums.values()].some((s) => s.live)) sput();
    else sdel();
  }
  return { ops, items, sums };
}

/* ------------------------------------------------------------------ */
/* the expected state                                                  */

/* Final summaries of one device: its ops on each (date, source) in its own order. */
function simulateSummaries(sums) {
  const out = new Map(); // key -> item (live only)
  for (const [key, s] of sums) {
    let liveOp = null; // the stored snapshot
    let tomb = null; // recorded_at of the deleted one
    for (const op of s.ops) {
      if (op.kind === 'sput') {
        if (liveOp) {
          if (op.rec > liveOp.rec || (op.rec === liveOp.rec && op.text > liveOp.text)) liveOp = op;
        } else if (tomb === null || op.rec > tomb) {
          liveOp = op;
          tomb = null;
        }
      } else if (liveOp) {
        tomb = liveOp.rec;
        liveOp = null;
      }
    }
    if (liveOp) out.set(key, liveOp.item);
  }
  return out;
}

/* Per local day {mo, vi, li}, from live session docs and live summary items. */
function expectedDays(docs, summaries) {
  const minutes = new Map(); // date -> Map(utc minute -> level)
  for (const doc of docs) {
    const { start, end, off } = intervalOf(doc);
    const lvl = levelOf(doc);
    for (let t = start; t < end; t += MIN) {
      const d = localDate(t, off);
      let m = minutes.get(d);
      if (!m) minutes.set(d, (m = new Map()));
      if ((m.get(t) || 0) < lvl) m.set(t, lvl);
    }
  }
  const days = new Map();
  for (const [d, m] of minutes) {
    const day = { mo: 0, vi: 0, li: 0 };
    for (const lvl of m.values()) day[['', 'li', 'mo', 'vi'][lvl]]++;
    days.set(d, day);
  }
  for (const s of summaries) {
    const day = days.get(s.date) || { mo: 0, vi: 0, li: 0 };
    day.mo = Math.max(day.mo, s.moderate_min);
    day.vi = Math.max(day.vi, s.vigorous_min);
    day.li = Math.max(day.li, s.light_min ?? 0);
    days.set(s.date, day);
  }
  return days;
}

/* ------------------------------------------------------------------ */
/* delivery                                                            */

const SUCCESS = {
  upload: ['created', 'duplicate', 'deleted'],
  update: ['updated', 'duplicate'],
  delete: ['deleted', 'duplicate'],
  sput: ['applied', 'duplicate', 'stale'],
  sdel: ['deleted', 'duplicate'],
};

/* A reply reduced to {status} or {code, current}. Batches hold one item here. */
function outcome(reply) {
  if (reply.type === 'error') return { code: reply.code, current: reply.current, reply };
  if (reply.results) {
    const r = reply.results[0];
    if (r.status === 'error') return { code: r.code, reply };
    return { status: r.status, reply };
  }
  return { status: reply.status, reply };
}

/* Ready to send: not held back, and a summary op not waiting for its key's order (see the header). */
function ready(op, round) {
  if (op.notBefore > round) return false;
  if (op.kind === 'sdel') return op.keyOps.slice(0, op.keyPos).every((o) => o.acked);
  if (op.kind === 'sput') return op.keyOps.slice(0, op.keyPos).every((o) => o.kind !== 'sdel' || o.acked);
  return true;
}

/*
 * What a failed reply means for an op that no copy has had acknowledged yet:
 * "requeue" (a predecessor has not arrived), "superseded" (the item was
 * deleted by the device's own unconditional delete: the edit is moot), or
 * "unexpected".
 */
function judgeFailure(op, o) {
  if (o.code === 'rate_limited' || o.code === 'unavailable') return 'requeue';
  if (op.kind === 'update' || op.kind === 'delete') {
    if (o.code === 'not_found') return 'requeue';
    if (o.code === 'conflict' && o.current) {
      if (o.current.deleted) {
        const del = op.chain[op.chain.length - 1];
        return del.kind === 'delete' && del.base === undefined && del !== op ? 'superseded' : 'unexpected';
      }
      if (o.current.rev < op.base) return 'requeue';
    }
  }
  return 'unexpected';
}

/* ------------------------------------------------------------------ */

describe(`sync model (seed ${SEED})`, () => {
  let srv;
  before(async () => {
    console.log(`sync model: seed ${SEED} (replay: FITSYNC_MODEL_SEED=${SEED}), ${OPS} ops per device of the first user` +
      (FULL_UPDATES ? ', full updates' : ''));
    srv = await startServer({
      env: {
        FITSYNC_MAX_AGE_WEEKS: '0',
        FITSYNC_RATE_MESSAGES_PER_S: '1000000',
        FITSYNC_RATE_BURST: '1000000',
        FITSYNC_MAX_QUEUE_BYTES: String(128 * 1024 * 1024),
      },
    });
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it('random ops from two devices per user, shuffled, duplicated and retried, end exactly as the model says', async (t) => {
    const t0 = Date.now();
    const rng = makeRng(SEED);
    const users = [
      { name: `ada-${SEED}`, devices: ['phone', 'watch'], n: OPS },
      { name: `bo-${SEED}`, devices: ['phone', 'watch'], n: Math.max(50, Math.round(OPS / 2)) },
    ];
    // Generate everything first (so a seed gives the same ops whatever the timing).
    const devices = [];
    for (const u of users) {
      u.anchors = [];
      u.devs = [];
      for (const name of u.devices) {
        const g = generateDevice(rng.fork(), u.name, name, u.n, u.anchors);
        const d = { user: u, name, ...g, next: 0, pending: [], pushes: [] };
        u.devs.push(d);
        devices.push(d);
      }
    }
    const delivery = rng.fork();
    for (const d of devices) {
      d.client = await srv.login(d.user.name, d.name);
      d.client.keepMessages = false;
    }
    const totalOps = devices.reduce((n, d) => n + d.ops.length, 0);
    const stats = { rounds: 0, messages: 0, dups: 0, lateDups: 0, requeued: 0, superseded: 0, statuses: {} };
    const unexpected = [];
    let reqSeq = 0;
    let remaining = totalOps;

    for (let round = 0; remaining > 0; round++) {
      assert.ok(round < 20000, `no progress after ${round} rounds; ${remaining} ops unacknowledged`);
      stats.rounds++;
      const outgoing = []; // {d, op, id, late}
      for (const d of devices) {
        // The device's next ops become pending; some are held back (offline for a while).
        const k = delivery.int(5, 70);
        for (let i = 0; i < k && d.next < d.ops.length; i++) {
          const op = d.ops[d.next++];
          op.notBefore = delivery.chance(P_DEFER) ? round + delivery.int(1, 6) : round;
          op.copies = [];
          d.pending.push(op);
        }
        for (const op of d.pending) {
          if (!ready(op, round)) continue;
          outgoing.push({ d, op });
          if (delivery.chance(P_DUP)) {
            outgoing.push({ d, op });
            stats.dups++;
          }
        }
        // Retries of ops already acknowledged (a reply that was lost), not of a summary
        // delete that later ops on its summary depend on.
        for (let i = 0; i < 3 && d.next > 0; i++) {
          if (!delivery.chance(P_LATE_DUP)) continue;
          const op = d.ops[delivery.int(0, d.next - 1)];
          if (!op.acked) continue;
          if (op.kind === 'sdel' && op.keyPos !== op.keyOps.length - 1) continue;
          outgoing.push({ d, op, late: true });
          stats.lateDups++;
        }
      }
      delivery.shuffle(outgoing);
      const replies = outgoing.map((m) => {
        const id = `m${++reqSeq}`;
        return m.d.client.pipeline({ ...m.op.msg, id });
      });
      stats.messages += outgoing.length;
      const got = await withTimeout(Promise.all(replies), 120000, `the replies of round ${round}`);
      // Judge each op by all the replies its copies got in this round.
      const byOp = new Map();
      got.forEach((reply, i) => {
        const m = outgoing[i];
        const o = outcome(reply);
        if (o.status) stats.statuses[`${m.op.kind}:${o.status}`] = (stats.statuses[`${m.op.kind}:${o.status}`] || 0) + 1;
        else stats.statuses[`${m.op.kind}:${o.code}`] = (stats.statuses[`${m.op.kind}:${o.code}`] || 0) + 1;
        if (m.late) {
          // A late retry must be harmless: a success, or (an upload or edit since changed) a conflict.
          if (!o.status && !(o.code === 'conflict' && (m.op.kind === 'upload' || m.op.kind === 'update')))
            unexpected.push({ what: 'late retry', op: m.op.msg, reply });
          return;
        }
        if (!byOp.has(m.op)) byOp.set(m.op, []);
        byOp.get(m.op).push(o);
      });
      for (const [op, outs] of byOp) {
        if (op.acked) continue;
        const ok = outs.find((o) => o.status && SUCCESS[op.kind].includes(o.status));
        let verdict;
        if (ok) {
          verdict = 'acked';
          op.ackStatus = ok.status;
          // An acknowledged edit must carry the rev the device expects (an unconditional
          // delete may overtake edits, and then has a lower one).
          if ((op.kind === 'update' || (op.kind === 'delete' && op.base !== undefined)) && ok.reply.rev !== op.rev)
            unexpected.push({ what: `rev ${ok.reply.rev}, expected ${op.rev}`, op: op.msg, reply: ok.reply });
        } else {
          const verdicts = outs.map((o) => judgeFailure(op, o));
          verdict = verdicts.includes('unexpected') ? 'unexpected' : verdicts.includes('superseded') ? 'superseded' : 'requeue';
        }
        if (verdict === 'unexpected') {
          // Recorded (the test fails), and retried like a predecessor problem, so the run
          // still ends and the totals are compared too.
          unexpected.push({ what: 'failed', op: op.msg, replies: outs.map((o) => o.reply) });
          op.unexpected = (op.unexpected || 0) + 1;
          if (op.unexpected < 50) verdict = 'requeue';
        }
        if (verdict === 'requeue') {
          stats.requeued++;
          continue;
        }
        if (verdict === 'superseded') stats.superseded++;
        op.acked = true;
        remaining--;
      }
      for (const d of devices) {
        d.pending = d.pending.filter((op) => !op.acked);
        d.pushes.push(...d.client.takePushes((m) => m.type === 'change'));
        d.client.takePushes(); // progress pushes: not checked here
      }
    }
    const deliveredMs = Date.now() - t0;
    if (unexpected.length) {
      console.log(`seed ${SEED}: ${unexpected.length} unexpected replies; the first ones:\n` +
        unexpected.slice(0, 20).map((u) => JSON.stringify(u)).join('\n'));
    }

    // ---- the model
    const mismatches = [];
    for (const u of users) {
      const docs = new Map(); // cid -> {doc, rev}
      const sums = new Map(); // key -> item
      for (const d of u.devs) {
        for (const [cid, it] of d.items) if (!it.deleted) docs.set(cid, { doc: it.doc, rev: it.rev });
        for (const [key, item] of simulateSummaries(d.sums)) sums.set(key, item);
      }
      u.docs = docs;
      u.sums = sums;
      u.days = expectedDays([...docs.values()].map((x) => x.doc), [...sums.values()]);
      const touched = new Set([...u.days.keys()].map(isoWeek));
      for (const d of u.devs) {
        for (const it of d.items.values()) for (const op of it.chain) if (op.doc) {
          const { start, end, off } = intervalOf(op.doc);
          touched.add(isoWeek(localDate(start, off)));
          touched.add(isoWeek(localDate(end - 1, off)));
        }
        for (const key of d.sums.keys()) touched.add(isoWeek(key.split('|')[0]));
      }
      const sorted = [...touched].sort();
      u.weeks = weekRange(sorted[0], sorted[sorted.length - 1]);
    }

    const probe = await srv.login(users[0].name, 'probe');
    const probeB = await srv.login(users[1].name, 'probe');
    for (const [u, c] of [[users[0], probe], [users[1], probeB]]) {
      // history.get over every week touched (and the ones between), and week.get for each.
      const h = await c.request({ type: 'history.get', from_week: u.weeks[0], to_week: u.weeks[u.weeks.length - 1] }, 30000);
      assert.equal(h.type, 'history.get', JSON.stringify(h));
      assert.deepEqual(h.weeks.map((w) => w.week), u.weeks);
      const wg = await Promise.all(u.weeks.map((week) => c.request({ type: 'week.get', week }, 30000)));
      h.weeks.forEach((wk, i) => {
        assert.deepEqual(wg[i].week, wk, `week.get and history.get agree on ${wk.week}`);
        const want = { moderate_min: 0, vigorous_min: 0, light_min: 0 };
        for (const day of wk.days) {
          const m = u.days.get(day.date) || { mo: 0, vi: 0, li: 0 };
          want.moderate_min += m.mo;
          want.vigorous_min += m.vi;
          want.light_min += m.li;
          const got = { mo: day.moderate_min, vi: day.vigorous_min, li: day.light_min, mvpa: day.mvpa_min, eq: day.equivalent_min };
          const exp = { mo: m.mo, vi: m.vi, li: m.li, mvpa: m.mo + m.vi, eq: m.mo + 2 * m.vi };
          if (JSON.stringify(got) !== JSON.stringify(exp)) mismatches.push({ user: u.name, day: day.date, expected: exp, actual: got });
        }
        want.mvpa_min = want.moderate_min + want.vigorous_min;
        want.equivalent_min = want.moderate_min + 2 * want.vigorous_min;
        const got = {};
        for (const k of Object.keys(want)) got[k] = wk[k];
        if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push({ user: u.name, week: wk.week, expected: want, actual: got });
      });
    }
    if (mismatches.length) {
      console.log(`seed ${SEED}: ${mismatches.length} mismatches with the model:\n` +
        mismatches.slice(0, 30).map((m) => JSON.stringify(m)).join('\n'));
    }
    assert.equal(mismatches.length, 0,
      `seed ${SEED}: ${mismatches.length} days/weeks differ from the model; first: ${JSON.stringify(mismatches[0])}` +
      (unexpected.length ? ` (and ${unexpected.length} unexpected replies, printed above)` : ''));
    assert.equal(unexpected.length, 0, `seed ${SEED}: ${unexpected.length} unexpected replies (first: ${JSON.stringify(unexpected[0])})`);

    // ---- the change log, replayed by a fresh device, gives the same items and revs
    for (const [u, c] of [[users[0], probe], [users[1], probeB]]) {
      const log = [];
      let cursor = '0-0';
      for (;;) {
        const r = await c.request({ type: 'sync.pull', cursor, limit: 1000 }, 30000);
        assert.equal(r.type, 'sync.pull', JSON.stringify(r));
        log.push(...r.changes);
        assert.equal(r.cursor, r.changes.length ? r.changes[r.changes.length - 1].cursor : cursor);
        cursor = r.cursor;
        if (!r.more) break;
      }
      assert.equal(cursor, c.welcome.cursor, 'the last change is the cursor the probe was welcomed with');
      const acts = new Map();
      const sums = new Map();
      for (const ch of log) {
        assert.ok(ch.kind === 'profile' || ch.id.startsWith(`${u.name}.`) || ch.id.includes('|'), `a change of another user? ${JSON.stringify(ch)}`);
        const map = ch.kind === 'activity' ? acts : ch.kind === 'summary' ? sums : null;
        if (!map) continue;
        if (ch.op === 'delete') map.delete(ch.id);
        else map.set(ch.id, ch);
      }
      const replayErrors = [];
      for (const [cid, want] of u.docs) {
        const ch = acts.get(cid);
        if (!ch) replayErrors.push({ cid, expected: want, actual: 'absent' });
        else {
          const { rev, ...item } = ch.item;
          if (rev !== want.rev || ch.rev !== want.rev || JSON.stringify(sortedDeep(item)) !== JSON.stringify(sortedDeep(want.doc)))
            replayErrors.push({ cid, expected: want, actual: ch.item });
        }
      }
      for (const cid of acts.keys()) if (!u.docs.has(cid)) replayErrors.push({ cid, expected: 'deleted', actual: acts.get(cid).item });
      for (const [key, item] of u.sums) {
        const ch = sums.get(key);
        if (!ch || sortedJson(ch.item) !== sortedJson(item)) replayErrors.push({ summary: key, expected: item, actual: ch?.item });
      }
      for (const key of sums.keys()) if (!u.sums.has(key)) replayErrors.push({ summary: key, expected: 'deleted', actual: sums.get(key).item });
      if (replayErrors.length)
        console.log(`seed ${SEED}: change log of ${u.name} differs:\n${replayErrors.slice(0, 20).map((e) => JSON.stringify(e)).join('\n')}`);
      assert.equal(replayErrors.length, 0, `seed ${SEED}: the change log of ${u.name} replays to a different state`);

      // Every logged change went to exactly the user's other devices, as a push.
      for (const d of u.devs) {
        const want = new Set(log.filter((ch) => ch.device_id !== d.name).map((ch) => ch.cursor));
        await waitFor(() => {
          d.pushes.push(...d.client.takePushes((m) => m.type === 'change'));
          return d.pushes.length >= want.size;
        }, { timeout: 10000, what: `${want.size} change pushes on ${u.name}/${d.name}` }).catch(() => {});
        const got = new Set(d.pushes.map((p) => p.cursor));
        assert.equal(d.pushes.length, got.size, `no change is pushed twice to ${u.name}/${d.name}`);
        assert.deepEqual([...got].sort(), [...want].sort(), `change pushes on ${u.name}/${d.name}`);
      }

      // account.export holds the same items.
      const ex = await c.request({ type: 'account.export' }, 60000);
      assert.equal(ex.type, 'account.export', JSON.stringify(ex).slice(0, 300));
      const exActs = new Map(ex.export.activities.map((a) => [a.client_id, a]));
      assert.deepEqual([...exActs.keys()].sort(), [...u.docs.keys()].sort(), `exported sessions of ${u.name}`);
      for (const [cid, want] of u.docs) assert.deepEqual(exActs.get(cid), { ...want.doc, rev: want.rev }, `exported ${cid}`);
      const exSums = new Map(ex.export.summaries.map((s) => [`${s.date}|${s.source}`, s]));
      assert.deepEqual([...exSums.keys()].sort(), [...u.sums.keys()].sort(), `exported summaries of ${u.name}`);
      for (const [key, item] of u.sums) assert.deepEqual(exSums.get(key), item, `exported summary ${key}`);
    }

    const ms = Date.now() - t0;
    const line = `sync model: seed ${SEED}: ${totalOps} ops, ${stats.messages} messages (${stats.dups} sent twice at once, ` +
      `${stats.lateDups} late retries), ${stats.rounds} rounds, ${stats.requeued} requeued, ${stats.superseded} superseded; ` +
      `delivered in ${deliveredMs} ms, checked in ${ms} ms`;
    console.log(line);
    console.log(`replies: ${JSON.stringify(stats.statuses)}`);
    t.diagnostic(line);
    for (const c of [probe, probeB, ...devices.map((d) => d.client)]) await c.closeAndWait();
  });
});

/* A copy with object keys sorted at every level (for order-insensitive comparison of documents). */
function sortedDeep(v) {
  if (Array.isArray(v)) return v.map(sortedDeep);
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedDeep(v[k])]));
  return v;
}

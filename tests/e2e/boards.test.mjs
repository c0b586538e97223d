// boards.test.mjs: live leaderboards end to end (leaderboard.get, rank.get,
// leaderboard.subscribe/unsubscribe and the coalesced "leaderboard" pushes),
// over real WebSockets against real fitsyncd processes and real Redis.
//
// Servers (each on a free port in a fresh temporary directory; the rate
// limit is lifted everywhere, these tests send bursts on purpose):
//   shared    two fitsyncd on ONE standalone redis-server that this file
//             starts itself: a change made through one is pushed by the
//             other within a tick (the latency is printed);
//   main      defaults (tick 250 ms): ties, deletes and edits, profile
//             moves, bad input, subscription limits, week:current;
//   tick1s    FITSYNC_BOARDS_TICK_MS=1000: a burst of 100 uploads, one push;
//   shards    FITSYNC_SHARDS=1 and =4, each with its embedded Redis: the
//             same uploads give the same boards, pages and ranks;
//   tight     FITSYNC_MAX_QUEUE_BYTES=65536 (the minimum), tick 50 ms: a
//             client that stops reading is cut off with 1008 while one on
//             the same boards keeps receiving;
//   roomy     tick 50 ms, default queue: a client that pauses gets the
//             newest state of each board (stale pushes replaced in its queue).
//
// Expected boards are computed here from what the test uploaded: a score is
// equivalent minutes (moderate + 2 x vigorous) of the member's ISO week, and
// every session is placed on whole minutes, without overlap, inside its week
// (in the programme's +08:00), so a member's score is the sum of what was
// sent. Data goes into past weeks (1..6 weeks back, so nothing is in the
// future whatever the day), and each test uses its own week or team so that
// tests do not see each other's members.
//
// Pushes carry the board as subscribed in "board" and the resolved board
// name (week:2026-W49:all for week:current:all) in "week".
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/boards.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer,
  connect,
  sleep,
  waitFor,
  withTimeout,
  tempDir,
  MIN,
  rfc3339,
  localDate,
  addDays,
  mondayOf,
  isoWeek,
  weekMonday,
  at,
  onlyOneRedis,
  embeddedOnly,
} from './lib.mjs';

/* ------------------------------------------------------------------ */
/* calendar                                                            */

const OFF = 8 * 60; // config/fitsync.json "timezone": "+08:00"
const today = () => localDate(Date.now(), OFF);
const currentWeek = () => isoWeek(today());
/* The ISO week k weeks before the current one (in +08:00). */
const weekAgo = (k) => isoWeek(addDays(mondayOf(today()), -7 * k));

/* Age bands of config/age_bands.json; age = the week's ISO year - birth year. */
const BANDS = [
  ['5-17', 5, 17],
  ['18-34', 18, 34],
  ['35-49', 35, 49],
  ['50-64', 50, 64],
  ['65+', 65, Infinity],
];
function bandOf(week, birthYear) {
  if (birthYear == null) return null;
  const age = Number(week.slice(0, 4)) - birthYear;
  const b = BANDS.find(([, lo, hi]) => age >= lo && age <= hi);
  return b ? b[0] : null;
}

/* Rate limit out of the way: these tests send bursts on purpose. */
const FAST = { FITSYNC_RATE_MESSAGES_PER_S: '100000', FITSYNC_RATE_BURST: '100000' };

let seq = 0;
const uniq = (name) => `${name}-${process.pid}-${++seq}`;

/* ------------------------------------------------------------------ */
/* members and their model                                             */

/*
 * A member on one connection, with the model of what they uploaded: per week
 * the next free minute (sessions never overlap, so minutes add up) and the
 * score; per activity its week, equivalent minutes and rev.
 */
class Member {
  constructor(srv, sub, client, profile = {}) {
    this.srv = srv;
    this.sub = sub;
    this.c = client;
    this.profile = { ...profile };
    this.next = new Map(); // week -> next free minute from Monday 00:00 local
    this.scores = new Map(); // week -> equivalent minutes
    this.acts = new Map(); // client_id -> {week, eq, rev, item}
    this.n = 0;
  }

  static async login(srv, sub, profile) {
    const c = await srv.login(sub, 'phone');
    c.keepMessages = false;
    const m = new Member(srv, sub, c);
    if (profile) await m.set(profile);
    return m;
  }

  async set(profile) {
    const r = await this.c.request({ type: 'profile.set', profile });
    assert.equal(r.type, 'profile.set', JSON.stringify(r));
    for (const [k, v] of Object.entries(profile)) {
      if (v === null || v === '') delete this.profile[k];
      else this.profile[k] = v;
    }
    return r;
  }

  get name() {
    return this.profile.display_name;
  }
  get onBoards() {
    return this.profile.boards !== false;
  }
  score(week) {
    return this.scores.get(week) || 0;
  }
  /* The scopes this member's week appears on (as the server should compute them). */
  scopes(week) {
    if (!this.onBoards) return [];
    const s = ['all'];
    if (this.profile.district) s.push(`district:${this.profile.district}`);
    if (this.profile.team) s.push(`team:${this.profile.team}`);
    const band = bandOf(week, this.profile.birth_year);
    if (band) s.push(`age:${band}`);
    return s;
  }

  /* A session item of `minutes` at the given intensity in the next free slot of week. */
  item(week, minutes, intensity = 'moderate') {
    const slot = this.next.get(week) ?? 60; // from 01:00 on the Monday
    assert.ok(slot + minutes < 7 * 24 * 60 - 60, 'the session stays inside its week');
    this.next.set(week, slot + minutes + 1);
    const start = at(weekMonday(week), 0, 0, OFF) + slot * MIN;
    const clientId = `${this.sub}-a${++this.n}`;
    const item = {
      client_id: clientId,
      type: intensity === 'vigorous' ? 'running' : 'walking',
      intensity,
      start: rfc3339(start, OFF),
      duration_s: minutes * 60,
    };
    const eq = intensity === 'vigorous' ? 2 * minutes : intensity === 'moderate' ? minutes : 0;
    return { item, eq, week };
  }

  /* Books an accepted item into the model. */
  book({ item, eq, week }) {
    this.acts.set(item.client_id, { week, eq, rev: 1, item });
    this.scores.set(week, this.score(week) + eq);
  }

  /* Uploads one session and waits for "created". Returns the reply. */
  async walk(week, minutes, intensity = 'moderate') {
    const it = this.item(week, minutes, intensity);
    const r = await this.c.request({ type: 'activity.upload', activities: [it.item] });
    assert.equal(r.type, 'activity.upload', JSON.stringify(r));
    assert.equal(r.results[0].status, 'created', JSON.stringify(r.results[0]));
    this.book(it);
    return r;
  }

  /* The same without waiting: a promise of the reply (books on success). */
  walkPipelined(week, minutes, intensity = 'moderate') {
    const it = this.item(week, minutes, intensity);
    return this.c.pipeline({ type: 'activity.upload', activities: [it.item] }).then((r) => {
      assert.equal(r.results?.[0]?.status, 'created', JSON.stringify(r));
      this.book(it);
      return r;
    });
  }

  async remove(clientId) {
    const a = this.acts.get(clientId);
    const r = await this.c.request({ type: 'activity.delete', client_id: clientId, base_rev: a.rev });
    assert.equal(r.type, 'activity.delete', JSON.stringify(r));
    assert.equal(r.status, 'deleted', JSON.stringify(r));
    this.acts.delete(clientId);
    this.scores.set(a.week, this.score(a.week) - a.eq);
    return r;
  }

  /* Changes a moderate session's duration (it keeps its start, so it stays in its slot if shorter). */
  async shorten(clientId, minutes) {
    const a = this.acts.get(clientId);
    assert.equal(a.item.intensity, 'moderate');
    assert.ok(minutes * 60 < a.item.duration_s);
    const r = await this.c.request({
      type: 'activity.update',
      client_id: clientId,
      base_rev: a.rev,
      duration_s: minutes * 60,
    });
    assert.equal(r.type, 'activity.update', JSON.stringify(r));
    assert.equal(r.status, 'updated', JSON.stringify(r));
    this.scores.set(a.week, this.score(a.week) - a.eq + minutes);
    a.eq = minutes;
    a.rev = r.rev;
    a.item = { ...a.item, duration_s: minutes * 60 };
    return r;
  }

  rank(board) {
    return this.c.request({ type: 'rank.get', board });
  }
}

/*
 * The expected board: members on scope in week with a score > 0, best first.
 * Scores must be distinct unless order says who reached theirs first
 * (members earlier in `order` rank first on equal scores).
 */
function ranked(members, week, scope, order = members) {
  const on = members.filter((m) => m.score(week) > 0 && m.scopes(week).includes(scope));
  return on.sort((a, b) => b.score(week) - a.score(week) || order.indexOf(a) - order.indexOf(b));
}
function expected(members, week, scope, order = members) {
  return ranked(members, week, scope, order).map((m, i) => ({ rank: i + 1, name: m.name, score: m.score(week) }));
}

/* ------------------------------------------------------------------ */
/* requests and pushes                                                 */

const boardGet = async (c, board, extra = {}) => {
  const r = await c.request({ type: 'leaderboard.get', board, ...extra });
  assert.equal(r.type, 'leaderboard.get', JSON.stringify(r));
  return r;
};

const subscribe = async (c, board, limit = 10) => {
  const r = await c.request({ type: 'leaderboard.subscribe', board, limit });
  assert.equal(r.type, 'leaderboard.subscribe', JSON.stringify(r));
  return r;
};

const isPush = (board) => (m) => m.re === undefined && m.type === 'leaderboard' && m.board === board;

/* The next "leaderboard" push for board (as subscribed) that satisfies pred. */
const boardPush = (c, board, pred = () => true, timeout = 5000, what = '') =>
  c.next((m) => isPush(board)(m) && pred(m), timeout, `a leaderboard push for ${board} ${what}`);

/* The pushes for board already received and not taken. */
const takeBoardPushes = (c, board) => {
  const got = c.pushes.filter(isPush(board));
  c.pushes = c.pushes.filter((m) => !isPush(board)(m));
  return got;
};

const sameEntries = (want) => (m) => JSON.stringify(m.entries) === JSON.stringify(want);

/*
 * Sends requests in one TCP write (so the server reads them together, as it
 * would from a client on a slow link) and resolves with their replies.
 */
function together(c, msgs) {
  const sock = c.ws._socket;
  sock.cork();
  const replies = msgs.map((m) => c.pipeline(m));
  process.nextTick(() => sock.uncork());
  return withTimeout(Promise.all(replies), 5000, 'the replies to requests sent together');
}

function assertError(reply, code, field) {
  assert.equal(reply.type, 'error', JSON.stringify(reply));
  assert.equal(reply.code, code, JSON.stringify(reply));
  assert.equal(reply.field, field, JSON.stringify(reply));
  assert.ok(typeof reply.message === 'string' && reply.message.length > 0, JSON.stringify(reply));
}

/* ------------------------------------------------------------------ */
/* a standalone redis-server                                           */

async function startRedis() {
  const dir = tempDir('fitsync-e2e-redis-');
  const sock = path.join(dir, 'redis.sock');
  const proc = spawn(
    'redis-server',
    ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] }
  );
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const exited = new Promise((r) => proc.on('exit', r));
  const redis = {
    dir,
    sock,
    proc,
    cli: (...args) => execFileSync('redis-cli', ['-s', sock, ...args], { encoding: 'utf8', timeout: 5000 }).trim(),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await withTimeout(exited, 5000, 'redis-server to exit').catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitFor(() => fs.existsSync(sock) && redis.cli('PING') === 'PONG', {
      timeout: 10000,
      what: 'redis-server to answer PING',
    });
  } catch (e) {
    await redis.stop();
    throw new Error(`${e.message}\n${out}`);
  }
  return redis;
}

/* Board keys of a server's embedded Redis (SCAN). */
function boardKeys(srv) {
  const sock = path.join(srv.dataDir, 'redis.sock');
  const out = execFileSync('redis-cli', ['-s', sock, '--scan', '--pattern', 'fit:{s*}:lb:*'], {
    encoding: 'utf8',
    timeout: 10000,
  }).trim();
  return out ? [...new Set(out.split('\n'))] : [];
}

/* ------------------------------------------------------------------ */

describe('leaderboards across two fitsyncd processes sharing one Redis', () => {
  let redis, a, b;
  const TICK = 250;
  before(async () => {
    redis = await startRedis();
    const secret = crypto.randomBytes(24).toString('hex');
    [a, b] = await Promise.all([
      startServer({ secret, args: ['--redis', redis.sock], env: FAST }),
      startServer({ secret, env: { ...FAST, FITSYNC_REDIS_ADDRESS: redis.sock } }),
    ]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('both use the one Redis and listen on its "fit:lb" channel', { skip: embeddedOnly }, () => {
    assert.deepEqual(a.redisPids(), [], 'no embedded redis-server');
    assert.deepEqual(b.redisPids(), [], 'no embedded redis-server');
    assert.deepEqual(redis.cli('PUBSUB', 'NUMSUB', 'fit:lb').split('\n'), ['fit:lb', '2']);
  });

  it('an upload through one process is pushed by the other within one tick', async (t) => {
    const W = weekAgo(1);
    const board = `week:${W}:all`;
    const watchB = await b.login(uniq('watch-b'), 'screen');
    const watchA = await a.login(uniq('watch-a'), 'screen');
    const s = await subscribe(watchB, board, 10);
    assert.deepEqual([s.board, s.week, s.limit, s.size, s.entries], [board, board, 10, 0, []]);
    await subscribe(watchA, board, 10);
    const onA = await Member.login(a, uniq('ann'), { display_name: 'Ann on A' });
    const onB = await Member.login(b, uniq('bob'), { display_name: 'Bob on B' });
    const members = [onA, onB];

    const latencies = []; // ms from the upload's reply to the push on the other process
    const fromSend = [];
    for (let i = 0; i < 6; i++) {
      // Upload through A (even i) or B (odd i); watch on the other process.
      const [m, watcher] = i % 2 === 0 ? [onA, watchB] : [onB, watchA];
      await sleep(Math.floor(Math.random() * TICK)); // sample every phase of the tick
      const t0 = performance.now();
      await m.walk(W, 10 + i);
      const tAck = performance.now();
      const want = expected(members, W, 'all');
      const p = await boardPush(watcher, board, sameEntries(want), TICK + 2000, 'with the new score');
      const tPush = performance.now();
      latencies.push(tPush - tAck);
      fromSend.push(tPush - t0);
      assert.equal(p.week, board);
      assert.equal(p.size, want.length);
    }
    const fmt = (xs) => xs.map((x) => x.toFixed(0)).join(', ');
    const msg = `cross-process push latency after the upload's reply (ms): ${fmt(latencies)}; ` +
      `max ${Math.max(...latencies).toFixed(0)}; from send: ${fmt(fromSend)} (tick ${TICK} ms)`;
    t.diagnostic(msg);
    console.log(`# ${msg}`);
    for (const l of latencies) assert.ok(l <= TICK + 500, `push after ${l.toFixed(0)} ms > tick + 500 ms`);

    // Both processes read the same board.
    const [ga, gb] = await Promise.all([boardGet(watchA, board), boardGet(watchB, board)]);
    assert.deepEqual(ga.entries, expected(members, W, 'all'));
    assert.deepEqual(gb.entries, ga.entries);
    const [ra, rb] = await Promise.all([onA.rank(board), onB.rank(board)]);
    assert.deepEqual([ra.rank, ra.score, rb.rank, rb.score], [2, onA.score(W), 1, onB.score(W)]);
    for (const c of [watchA, watchB, onA.c, onB.c]) await c.closeAndWait();
  });
});

/* ------------------------------------------------------------------ */

describe('leaderboards on one process', () => {
  let srv;
  const TICK = 250;
  before(async () => {
    srv = await startServer({ env: FAST });
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it('equal scores rank who reached the score first; then more minutes go ahead', async () => {
    const W = weekAgo(2);
    const board = `week:${W}:all`;
    const watcher = await srv.login(uniq('watch'), 'screen');
    const x = await Member.login(srv, uniq('xena'), { display_name: 'Xena' });
    const y = await Member.login(srv, uniq('yuri'), { display_name: 'Yuri' });
    await subscribe(watcher, board, 10);
    // Yuri is on the board first, but reaches 30 only after Xena does.
    await y.walk(W, 20);
    await sleep(5);
    await x.walk(W, 30);
    await sleep(5);
    await y.walk(W, 10);
    assert.equal(x.score(W), 30);
    assert.equal(y.score(W), 30);
    const tie = [
      { rank: 1, name: 'Xena', score: 30 },
      { rank: 2, name: 'Yuri', score: 30 },
    ];
    assert.deepEqual((await boardGet(watcher, board)).entries, tie);
    await boardPush(watcher, board, sameEntries(tie), TICK + 2000);
    const rx = await x.rank(board);
    const ry = await y.rank(board);
    const { type, re, board: rb, week, ...rest } = rx;
    assert.deepEqual([type, rb, week], ['rank.get', board, board]);
    assert.deepEqual(rest, { on_board: true, rank: 1, score: 30, name: 'Xena', size: 2, above: [], below: [tie[1]] });
    assert.deepEqual(
      { rank: ry.rank, score: ry.score, name: ry.name, above: ry.above, below: ry.below },
      { rank: 2, score: 30, name: 'Yuri', above: [tie[0]], below: [] }
    );

    // Things that do not change Xena's score keep her tie-break: a session
    // entirely inside one she already has (minutes count once), a new name.
    const inner = {
      client_id: `${x.sub}-inner`,
      type: 'walking',
      intensity: 'moderate',
      start: rfc3339(at(weekMonday(W), 1, 5, OFF), OFF), // inside her 01:00-01:30 session
      duration_s: 10 * 60,
    };
    const r = await x.c.request({ type: 'activity.upload', activities: [inner] });
    assert.equal(r.results[0].status, 'created');
    await x.set({ display_name: 'Xena K' });
    const tie2 = [{ ...tie[0], name: 'Xena K' }, tie[1]];
    assert.deepEqual((await boardGet(watcher, board)).entries, tie2);
    assert.equal((await x.rank(board)).rank, 1);
    assert.equal((await y.rank(board)).rank, 2);

    // One more minute and Yuri goes ahead.
    await y.walk(W, 1);
    const ahead = [
      { rank: 1, name: 'Yuri', score: 31 },
      { rank: 2, name: 'Xena K', score: 30 },
    ];
    await boardPush(watcher, board, sameEntries(ahead), TICK + 2000);
    assert.deepEqual((await boardGet(watcher, board)).entries, ahead);
    assert.deepEqual([(await y.rank(board)).rank, (await x.rank(board)).rank], [1, 2]);
    for (const c of [watcher, x.c, y.c]) await c.closeAndWait();
  });

  it('ties do not fall back on user id order, either way round', async () => {
    // Zset ties order by member (user id), merges could too: the first to reach
    // a score must rank first whether their id sorts before or after the other's.
    const W = weekAgo(2);
    for (const [firstId, secondId] of [['aaa', 'zzz'], ['zzz', 'aaa']]) {
      const team = uniq('tie').toLowerCase();
      const board = `week:${W}:team:${team}`;
      const first = await Member.login(srv, `${firstId}-${uniq('t')}`, { display_name: `First ${firstId}`, team });
      const second = await Member.login(srv, `${secondId}-${uniq('t')}`, { display_name: `Second ${secondId}`, team });
      await first.walk(W, 25);
      await sleep(5);
      await second.walk(W, 25);
      const g = await boardGet(first.c, board);
      assert.deepEqual(g.entries.map((e) => [e.name, e.score]), [[`First ${firstId}`, 25], [`Second ${secondId}`, 25]]);
      const [r1, r2] = [await first.rank(board), await second.rank(board)];
      assert.deepEqual([r1.rank, r2.rank], [1, 2], `ids ${firstId} then ${secondId}`);
      assert.deepEqual(r1.below, [g.entries[1]]);
      assert.deepEqual(r2.above, [g.entries[0]]);
      for (const x of [first, second]) await x.c.closeAndWait();
    }
  });

  it('deleting the leader\'s activity re-ranks them, down and then off the board; a shorter edit re-ranks too', async () => {
    const W = weekAgo(3);
    const team = uniq('del').toLowerCase();
    const board = `week:${W}:team:${team}`;
    const allBoard = `week:${W}:all`;
    const watcher = await srv.login(uniq('watch'), 'screen');
    const lead = await Member.login(srv, uniq('lead'), { display_name: 'Leader', team });
    const b = await Member.login(srv, uniq('b'), { display_name: 'Bea', team });
    const c = await Member.login(srv, uniq('c'), { display_name: 'Cai', team });
    const members = [lead, b, c];
    await lead.walk(W, 50);
    await lead.walk(W, 15, 'vigorous'); // 30 equivalent minutes
    await b.walk(W, 60);
    await c.walk(W, 40);
    const s = await subscribe(watcher, board, 10);
    assert.deepEqual(s.entries, expected(members, W, `team:${team}`));
    assert.equal(s.entries[0].name, 'Leader');
    assert.equal(s.entries[0].score, 80);
    await subscribe(watcher, allBoard, 10);

    // The leader's 50 minutes go: 30 left, last of three.
    const [first] = [...lead.acts.keys()];
    await lead.remove(first);
    const dropped = expected(members, W, `team:${team}`);
    assert.deepEqual(dropped.map((e) => [e.name, e.score]), [['Bea', 60], ['Cai', 40], ['Leader', 30]]);
    const p1 = await boardPush(watcher, board, sameEntries(dropped), TICK + 2000, 'after the delete');
    assert.equal(p1.size, 3);
    assert.ok(p1.version > s.version, 'a new version');
    const r1 = await lead.rank(board);
    assert.deepEqual(
      { on_board: r1.on_board, rank: r1.rank, score: r1.score, size: r1.size, above: r1.above, below: r1.below },
      { on_board: true, rank: 3, score: 30, size: 3, above: dropped.slice(0, 2), below: [] }
    );

    // The last one goes: score 0, off the board (every board of the week).
    const [last] = [...lead.acts.keys()];
    await lead.remove(last);
    const gone = expected(members, W, `team:${team}`);
    assert.deepEqual(gone.map((e) => e.name), ['Bea', 'Cai']);
    const p2 = await boardPush(watcher, board, sameEntries(gone), TICK + 2000, 'after the last delete');
    assert.equal(p2.size, 2);
    assert.ok(p2.version > p1.version);
    const r2 = await lead.rank(board);
    assert.equal(r2.on_board, false);
    assert.equal(r2.rank, undefined);
    assert.equal((await lead.rank(allBoard)).on_board, false);
    assert.deepEqual((await boardGet(watcher, board)).entries, gone);
    assert.ok(!(await boardGet(watcher, allBoard)).entries.some((e) => e.name === 'Leader'));

    // Bea's 60-minute walk edited down to 35: Cai leads.
    const [bea] = [...b.acts.keys()];
    await b.shorten(bea, 35);
    const edited = expected(members, W, `team:${team}`);
    assert.deepEqual(edited.map((e) => [e.name, e.score]), [['Cai', 40], ['Bea', 35]]);
    await boardPush(watcher, board, sameEntries(edited), TICK + 2000, 'after the edit');
    const rb = await b.rank(board);
    assert.deepEqual([rb.rank, rb.score, rb.above, rb.below], [2, 35, [edited[0]], []]);
    assert.equal((await c.rank(board)).rank, 1);
    for (const x of [watcher, ...members.map((m) => m.c)]) await x.closeAndWait();
  });

  it('profile changes move the member between boards with their score', async () => {
    const W = weekAgo(4);
    const year = Number(W.slice(0, 4));
    const team = uniq('mv').toLowerCase();
    const team2 = uniq('mv2').toLowerCase();
    const wc = `week:${W}:district:wan-chai`;
    const st = `week:${W}:district:sha-tin`;
    const all = `week:${W}:all`;
    const watcher = await srv.login(uniq('watch'), 'screen');
    const mover = await Member.login(srv, uniq('mover'), {
      display_name: 'Mover',
      district: 'wan-chai',
      team,
      birth_year: year - 36, // 35-49 in W's year
    });
    const p = await Member.login(srv, uniq('p'), { display_name: 'Pat', district: 'wan-chai', team, birth_year: year - 36 });
    const q = await Member.login(srv, uniq('q'), { display_name: 'Quinn', district: 'sha-tin', birth_year: year - 20 });
    const members = [mover, p, q];
    await p.walk(W, 50);
    await mover.walk(W, 30);
    await q.walk(W, 20);
    for (const board of [wc, st, all]) await subscribe(watcher, board, 10);
    const bands = () => ({ mover: bandOf(W, mover.profile.birth_year) });
    assert.equal(bands().mover, '35-49');

    // District: off wan-chai, onto sha-tin with the same score.
    await mover.set({ district: 'sha-tin' });
    const wcNow = expected(members, W, 'district:wan-chai');
    const stNow = expected(members, W, 'district:sha-tin');
    assert.deepEqual(wcNow.map((e) => e.name), ['Pat']);
    assert.deepEqual(stNow, [
      { rank: 1, name: 'Mover', score: 30 },
      { rank: 2, name: 'Quinn', score: 20 },
    ]);
    await boardPush(watcher, wc, sameEntries(wcNow), TICK + 2000, 'without the mover');
    await boardPush(watcher, st, sameEntries(stNow), TICK + 2000, 'with the mover');
    assert.equal((await mover.rank(wc)).on_board, false);
    const rs = await mover.rank(st);
    assert.deepEqual([rs.on_board, rs.rank, rs.score, rs.size, rs.below], [true, 1, 30, 2, [stNow[1]]]);
    assert.equal((await boardGet(watcher, wc)).size, 1);
    assert.equal((await boardGet(watcher, st)).size, 2);

    // Team and age band move too.
    await mover.set({ team: team2, birth_year: year - 20 });
    assert.equal(bands().mover, '18-34');
    assert.deepEqual((await boardGet(watcher, `week:${W}:team:${team}`)).entries.map((e) => e.name), ['Pat']);
    assert.deepEqual((await boardGet(watcher, `week:${W}:team:${team2}`)).entries, [{ rank: 1, name: 'Mover', score: 30 }]);
    assert.deepEqual((await boardGet(watcher, `week:${W}:age:35-49`)).entries.filter((e) => e.name === 'Mover'), []);
    const young = await boardGet(watcher, `week:${W}:age:18-34`);
    assert.deepEqual(young.entries, expected(members, W, 'age:18-34'));
    assert.deepEqual(young.entries.map((e) => e.name), ['Mover', 'Quinn']);

    // boards:false takes them off every board (and out of the sizes) ...
    const sizesBefore = {};
    for (const sc of mover.scopes(W)) sizesBefore[sc] = (await boardGet(watcher, `week:${W}:${sc}`)).size;
    const scopesBefore = mover.scopes(W);
    await mover.set({ boards: false });
    for (const sc of scopesBefore) {
      const g = await boardGet(watcher, `week:${W}:${sc}`);
      assert.ok(!g.entries.some((e) => e.name === 'Mover'), `${sc} without the mover`);
      assert.equal(g.size, sizesBefore[sc] - 1, `${sc} size`);
      assert.equal((await mover.rank(`week:${W}:${sc}`)).on_board, false);
    }
    await boardPush(watcher, all, sameEntries(expected(members, W, 'all')), TICK + 2000, 'without the member who left');
    // ... and keeps them off while they keep exercising ...
    await mover.walk(W, 10);
    assert.ok(!(await boardGet(watcher, all)).entries.some((e) => e.name === 'Mover'));
    assert.equal((await mover.rank(all)).on_board, false);
    // ... until boards:true brings them back with everything they did.
    await mover.set({ boards: true });
    const back = expected(members, W, 'all');
    assert.deepEqual(back.map((e) => [e.name, e.score]), [['Pat', 50], ['Mover', 40], ['Quinn', 20]]);
    await boardPush(watcher, all, sameEntries(back), TICK + 2000, 'with the member back');
    for (const sc of mover.scopes(W)) {
      const r = await mover.rank(`week:${W}:${sc}`);
      assert.equal(r.on_board, true, sc);
      assert.equal(r.score, 40, sc);
    }
    await boardPush(watcher, st, sameEntries(expected(members, W, 'district:sha-tin')), TICK + 2000);

    // A new display name shows on the board; no name shows a pseudonym, never the user id.
    await mover.set({ display_name: 'Mover 2' });
    await boardPush(watcher, all, sameEntries(expected(members, W, 'all')), TICK + 2000, 'with the new name');
    await mover.set({ display_name: null });
    const anon = await boardPush(watcher, all, (m) => /^member-/.test(m.entries[1]?.name), TICK + 2000, 'with no name');
    assert.match(anon.entries[1].name, /^member-[0-9a-f]{4}$/);
    assert.equal(anon.entries[1].score, 40);
    assert.ok(!JSON.stringify(anon).includes(mover.sub), 'no user id on the wire');
    assert.equal((await mover.rank(all)).name, anon.entries[1].name);
    for (const x of [watcher, ...members.map((m) => m.c)]) await x.closeAndWait();
  });

  it('refuses bad board names, limits and offsets with the documented codes', async () => {
    const W = weekAgo(5);
    const c = await srv.login(uniq('bad'), 'phone');
    const cases = [
      [{ board: `week:${W}:district:nowhere` }, 'invalid_value', 'board'],
      [{ board: `week:${W}:age:18-33` }, 'invalid_value', 'board'],
      [{ board: 'week:2026-W60:all' }, 'invalid_value', 'board'],
      [{ board: 'week:last:all' }, 'invalid_value', 'board'],
      [{ board: `week:${W}:everyone` }, 'invalid_value', 'board'],
      [{ board: `week:${W}` }, 'invalid_value', 'board'],
      [{ board: `week:${W}:team:Not_A_Slug` }, 'invalid_value', 'board'],
      [{ board: 'month:2026-11:all' }, 'invalid_value', 'board'],
      [{ board: 7 }, 'invalid_type', 'board'],
      [{}, 'missing_field', 'board'],
      [{ board: `week:${W}:all`, limit: 0 }, 'invalid_value', 'limit'],
      [{ board: `week:${W}:all`, limit: 101 }, 'invalid_value', 'limit'],
      [{ board: `week:${W}:all`, limit: '10' }, 'invalid_type', 'limit'],
      [{ board: `week:${W}:all`, limit: 2.5 }, 'invalid_type', 'limit'],
      [{ board: `week:${W}:all`, color: 'red' }, 'unknown_field', 'color'],
    ];
    for (const type of ['leaderboard.get', 'leaderboard.subscribe']) {
      for (const [fields, code, field] of cases) {
        const r = await c.request({ type, ...fields });
        assertError(r, code, field);
      }
    }
    const all = `week:${W}:all`;
    assertError(await c.request({ type: 'leaderboard.get', board: all, offset: -1 }), 'invalid_value', 'offset');
    assertError(await c.request({ type: 'leaderboard.get', board: all, offset: 'x' }), 'invalid_type', 'offset');
    assertError(await c.request({ type: 'leaderboard.subscribe', board: all, offset: 0 }), 'unknown_field', 'offset');
    for (const [fields, code, field] of cases.slice(0, 10)) {
      assertError(await c.request({ type: 'rank.get', ...fields }), code, field);
      assertError(await c.request({ type: 'leaderboard.unsubscribe', ...fields }), code, field);
    }
    // The edges that are fine.
    for (const limit of [1, 100]) assert.equal((await boardGet(c, `week:${W}:all`, { limit })).entries.length, 0);
    const g = await boardGet(c, `week:${W}:age:65+`, { offset: 10000, limit: 100 });
    assert.deepEqual([g.entries, g.size, g.offset], [[], 0, 10000]);
    // Pages go 10,000 deep (each shard is asked for its top offset + limit).
    assertError(await c.request({ type: 'leaderboard.get', board: all, offset: 10001 }), 'invalid_value', 'offset');

    // Before hello: unauthenticated. A staff token may read boards but has no rank.
    const anon = await connect(srv.url);
    assert.equal((await anon.request({ type: 'leaderboard.get', board: `week:${W}:all` })).code, 'unauthenticated');
    assert.equal((await anon.request({ type: 'rank.get', board: `week:${W}:all` })).code, 'unauthenticated');
    await anon.closeAndWait();
    const staff = await srv.login(uniq('staff'), 'desk', { role: 'staff' });
    assert.equal((await boardGet(staff, `week:${W}:all`)).size, 0);
    assert.equal((await subscribe(staff, `week:${W}:all`, 5)).limit, 5);
    assert.equal((await staff.request({ type: 'rank.get', board: `week:${W}:all` })).code, 'forbidden');
    for (const x of [c, staff]) await x.closeAndWait();
  });

  /* 16 distinct boards of week W (the default boards.max_subscriptions). */
  const sixteen = (W, tag) => [
    `week:${W}:all`,
    ...['wan-chai', 'north', 'islands', 'tai-po', 'sai-kung', 'eastern'].map((d) => `week:${W}:district:${d}`),
    ...['5-17', '18-34', '35-49', '50-64', '65+'].map((a) => `week:${W}:age:${a}`),
    `week:${W}:team:${tag}-1`,
    `week:${W}:team:${tag}-2`,
    `week:current:all`,
    `week:${weekAgo(6)}:all`,
  ];

  it('holds at most 16 subscriptions per connection; unsubscribing frees a place', async () => {
    const W = weekAgo(5);
    const tag = uniq('lim').toLowerCase();
    const c = await srv.login(uniq('subs'), 'screen');
    const boards = sixteen(W, tag);
    assert.equal(new Set(boards).size, 16);
    for (const board of boards) await subscribe(c, board, 10);
    const refused = async (board) =>
      assertError(await c.request({ type: 'leaderboard.subscribe', board, limit: 10 }), 'too_many_subscriptions', 'board');
    await refused(`week:${W}:team:${tag}-3`);
    // "current" and the explicit current week are different subscriptions too.
    await refused(`week:${currentWeek()}:all`);

    const u = await c.request({ type: 'leaderboard.unsubscribe', board: `week:${W}:team:${tag}-2` });
    assert.deepEqual(
      [u.type, u.board, u.subscribed, u.was_subscribed],
      ['leaderboard.unsubscribe', `week:${W}:team:${tag}-2`, false, true]
    );
    const u2 = await c.request({ type: 'leaderboard.unsubscribe', board: `week:${W}:team:${tag}-2` });
    assert.deepEqual([u2.type, u2.was_subscribed], ['leaderboard.unsubscribe', false]);
    await subscribe(c, `week:${W}:team:${tag}-3`, 10);
    await refused(`week:${W}:team:${tag}-4`);
    // A new connection has its own 16.
    const d = await srv.login(uniq('subs2'), 'screen');
    await subscribe(d, `week:${W}:team:${tag}-4`, 10);
    for (const x of [c, d]) await x.closeAndWait();
  });

  it('subscribing again to a board already held replaces it, also at the limit', async () => {
    const W = weekAgo(5);
    const c = await srv.login(uniq('resub'), 'screen');
    const boards = sixteen(W, uniq('re').toLowerCase());
    for (const board of boards) await subscribe(c, board, 10);
    // A big screen changing how many rows it shows: same board, new limit.
    const again = await c.request({ type: 'leaderboard.subscribe', board: boards[1], limit: 3 });
    assert.equal(again.type, 'leaderboard.subscribe', `re-subscribing at the limit: ${JSON.stringify(again)}`);
    assert.equal(again.limit, 3);
    await c.closeAndWait();
  });

  it('subscribing twice gives one stream with the last limit; unsubscribe stops that board\'s pushes', async () => {
    const W = weekAgo(5);
    const team = uniq('one').toLowerCase();
    const board = `week:${W}:team:${team}`;
    const other = `week:${W}:district:north`;
    const c = await srv.login(uniq('twice'), 'screen');
    const ms = [];
    for (const [name, min] of [['Una', 20], ['Duo', 15], ['Tri', 5]]) {
      const m = await Member.login(srv, uniq(name), { display_name: name, team, district: 'north' });
      await m.walk(W, min);
      ms.push(m);
    }
    const r1 = await subscribe(c, board, 5);
    assert.equal(r1.entries.length, 3);
    const r2 = await subscribe(c, board, 2);
    assert.deepEqual([r2.limit, r2.entries], [2, expected(ms, W, `team:${team}`).slice(0, 2)]);
    assert.ok(r2.version >= r1.version);
    await subscribe(c, other, 5);

    await ms[1].walk(W, 10); // Duo 25: first
    const want = expected(ms, W, `team:${team}`);
    assert.deepEqual(want.map((e) => e.name), ['Duo', 'Una', 'Tri']);
    const p = await boardPush(c, board, () => true, TICK + 2000, 'after Duo went ahead');
    assert.deepEqual(p.entries, want.slice(0, 2), 'one push, with the last limit');
    await sleep(3 * TICK);
    assert.deepEqual(takeBoardPushes(c, board), [], 'no second stream');

    // A change below the top 2 does not push at all.
    await ms[2].walk(W, 1);
    assert.ok(await c.quiet(isPush(board), 3 * TICK), 'no push when the top 2 did not change');

    // Unsubscribed: no more pushes for that board; the other subscription still pushes.
    const u = await c.request({ type: 'leaderboard.unsubscribe', board });
    assert.equal(u.was_subscribed, true);
    await ms[2].walk(W, 30); // Tri 36: first
    await boardPush(c, other, (x) => x.entries[0]?.name === 'Tri', TICK + 2000);
    assert.ok(await c.quiet(isPush(board), 3 * TICK), 'no push after unsubscribe');
    for (const x of [c, ...ms.map((m) => m.c)]) await x.closeAndWait();
  });

  it('two subscribes to one board sent together hold one place, not two', async () => {
    const W = weekAgo(6);
    const tag = uniq('dup').toLowerCase();
    const c = await srv.login(uniq('dup'), 'screen');
    const board = `week:${W}:team:${tag}-x`;
    const [a, b] = await together(c, [
      { type: 'leaderboard.subscribe', board, limit: 5 },
      { type: 'leaderboard.subscribe', board, limit: 5 },
    ]);
    assert.deepEqual([a.type, b.type], ['leaderboard.subscribe', 'leaderboard.subscribe']);
    // 15 more distinct boards fit beside it.
    for (let i = 0; i < 15; i++) {
      const r = await c.request({ type: 'leaderboard.subscribe', board: `week:${W}:team:${tag}-${i}`, limit: 5 });
      assert.equal(r.type, 'leaderboard.subscribe', `subscription ${i + 2} of 16: ${JSON.stringify(r)}`);
    }
    await c.closeAndWait();
  });

  it('subscribe then unsubscribe sent together leave the board unsubscribed', async () => {
    const W = weekAgo(6);
    const team = uniq('race').toLowerCase();
    const board = `week:${W}:team:${team}`;
    const c = await srv.login(uniq('race'), 'screen');
    const [s, u] = await together(c, [
      { type: 'leaderboard.subscribe', board, limit: 5 },
      { type: 'leaderboard.unsubscribe', board },
    ]);
    assert.equal(s.type, 'leaderboard.subscribe');
    assert.equal(u.type, 'leaderboard.unsubscribe');
    const m = await Member.login(srv, uniq('racer'), { display_name: 'Racer', team });
    await m.walk(W, 12);
    assert.ok(await c.quiet(isPush(board), 4 * TICK), 'no push for a board the client unsubscribed from');
    for (const x of [c, m.c]) await x.closeAndWait();
  });

  it('week:current is the current ISO week in +08:00', async () => {
    const before = currentWeek();
    const c = await srv.login(uniq('now'), 'screen');
    const m = await Member.login(srv, uniq('nowy'), { display_name: 'Now' });
    // A short session that has just ended (never before this week's Monday, never in the future).
    const weekStart = at(weekMonday(before), 0, 0, OFF);
    const start = Math.max(weekStart, Math.floor((Date.now() - 10 * MIN) / MIN) * MIN);
    const r = await m.c.request({
      type: 'activity.upload',
      activities: [
        { client_id: 'now-1', type: 'walking', intensity: 'moderate', start: rfc3339(start, OFF), duration_s: 300 },
      ],
    });
    assert.equal(r.results[0].status, 'created', JSON.stringify(r));
    const g = await boardGet(c, 'week:current:all');
    const s = await subscribe(c, 'week:current:district:wan-chai', 5);
    const rk = await m.rank('week:current:all');
    const after = currentWeek();
    const weeks = new Set([before, after]); // the week may turn over during the test
    assert.ok(weeks.has(g.week.split(':')[1]), `${g.week} is week:${before}:all`);
    assert.equal(g.week, `week:${g.week.split(':')[1]}:all`);
    assert.equal(g.board, 'week:current:all');
    assert.equal(s.week, `week:${g.week.split(':')[1]}:district:wan-chai`);
    assert.equal(s.board, 'week:current:district:wan-chai');
    assert.equal(rk.week, g.week);
    if (before === after) {
      assert.equal(g.entries.find((e) => e.name === 'Now')?.score, 5);
      assert.equal(rk.on_board, true);
      assert.equal(rk.score, 5);
      // The explicit name reads the same board.
      assert.deepEqual((await boardGet(c, `week:${before}:all`)).entries, g.entries);
    }
    for (const x of [c, m.c]) await x.closeAndWait();
  });
});

/* ------------------------------------------------------------------ */

describe('coalescing (tick 1000 ms)', () => {
  let srv;
  const TICK = 1000;
  before(async () => {
    srv = await startServer({ env: { ...FAST, FITSYNC_BOARDS_TICK_MS: String(TICK) } });
  });
  after(async () => {
    if (srv) await srv.stop();
  });

  it('100 uploads within one tick make one push that shows the final state', async (t) => {
    const W = weekAgo(1);
    const board = `week:${W}:all`;
    const watcher = await srv.login(uniq('watch'), 'screen');
    const members = [];
    for (let i = 0; i < 5; i++) members.push(await Member.login(srv, uniq(`burst${i}`), { display_name: `Burst ${i}` }));
    await subscribe(watcher, board, 10);
    // Line up with the tick: the push for a first upload comes right after a tick.
    await members[0].walk(W, 1);
    const first = await boardPush(watcher, board, (p) => p.size === 1, 2 * TICK + 2000);
    const t0 = performance.now();
    // 100 uploads from 5 members, all sent at once: member i adds 20 x (i + 1) minutes.
    const sends = [];
    for (let j = 0; j < 20; j++) for (let i = 0; i < 5; i++) sends.push(members[i].walkPipelined(W, i + 1));
    await withTimeout(Promise.all(sends), 10000, '100 upload replies');
    const burstMs = performance.now() - t0;
    const want = expected(members, W, 'all');
    assert.deepEqual(want.map((e) => e.score), [100, 80, 60, 40, 21]);
    const final = await boardPush(watcher, board, sameEntries(want), 2 * TICK + 2000, 'with the final state');
    assert.ok(await watcher.quiet(isPush(board), TICK + 500), 'nothing after the final state');
    const pushes = [...watcher.messages.filter(isPush(board))];
    const after = pushes.slice(pushes.indexOf(first) + 1);
    t.diagnostic(`burst of 100 uploads acknowledged in ${burstMs.toFixed(0)} ms; ${after.length} push(es) after it`);
    assert.equal(after[after.length - 1], final);
    if (burstMs < TICK * 0.8) assert.equal(after.length, 1, 'one push for the whole burst');
    else assert.ok(after.length <= 2, `${after.length} pushes for a burst of ${burstMs.toFixed(0)} ms`);
    assert.equal(final.version, first.version + after.length);
    assert.equal(final.size, 5);
    assert.deepEqual((await boardGet(watcher, board)).entries, want);
    for (const x of [watcher, ...members.map((m) => m.c)]) await x.closeAndWait();
  });
});

/* ------------------------------------------------------------------ */

describe('shards = 4 gives the same boards as shards = 1', { skip: onlyOneRedis }, () => {
  let one, four;
  before(async () => {
    [one, four] = await Promise.all([
      startServer({ env: { ...FAST, FITSYNC_SHARDS: '1' } }),
      startServer({ env: { ...FAST, FITSYNC_SHARDS: '4' } }),
    ]);
  });
  after(async () => {
    await Promise.all([one?.stop(), four?.stop()]);
  });

  const DISTRICTS = ['wan-chai', 'sha-tin', 'islands', 'north'];
  const TEAMS = ['t-red', 't-blue', 't-green'];
  const N = 44;

  /*
   * Member i's profile and score: distinct scores 5..200 not in upload order,
   * except the last 4, who tie at 77 (in upload order, across shards).
   */
  function plan(i, year) {
    const profile = {};
    if (i % 13 !== 5) profile.display_name = `Shard member ${String(i).padStart(2, '0')}`;
    if (i % 10 !== 9) profile.district = DISTRICTS[i % 4];
    const ages = [14, 27, 41, 56, 76, 3, null];
    if (ages[i % 7] !== null) profile.birth_year = year - ages[i % 7];
    if (i % 7 !== 6) profile.team = TEAMS[i % 3];
    if (i === 17) profile.boards = false;
    const score = i >= 40 ? 77 : (((i * 17) % 40) + 1) * 5;
    return { profile, score };
  }

  it('pages of every kind of board and ranks are identical, and the boards really span shards', async () => {
    const W = weekAgo(2);
    const year = Number(W.slice(0, 4));
    const runId = uniq('sh');
    const on = { one: [], four: [] };
    for (const [key, srv] of [['one', one], ['four', four]]) {
      // Same user ids on both (each server has its own Redis).
      on[key] = await Promise.all(Array.from({ length: N }, (_, i) => Member.login(srv, `${runId}-u${i}`)));
    }
    // The same profiles and uploads in the same order on both servers.
    await Promise.all(
      ['one', 'four'].map(async (key) => {
        for (let i = 0; i < N; i++) {
          const m = on[key][i];
          const { profile, score } = plan(i, year);
          await m.set(profile);
          if (score === 77) await sleep(3); // the tie-break clock counts milliseconds
          const vi = Math.floor(score / 4);
          await m.walk(W, score - 2 * vi);
          if (vi > 0) await m.walk(W, vi, 'vigorous');
          assert.equal(m.score(W), score);
        }
      })
    );
    const readers = { one: await one.login(uniq('reader'), 'screen'), four: await four.login(uniq('reader'), 'screen') };
    const model = on.one;

    const scopes = ['all', 'district:wan-chai', 'age:35-49', 'team:t-red', 'district:islands', 'age:5-17'];
    let compared = 0;
    for (const scope of scopes) {
      const board = `week:${W}:${scope}`;
      const want = expected(model, W, scope);
      assert.ok(want.length >= 3, `${scope} has members`);
      const pseudonyms = want.filter((e) => e.name === undefined).length;
      const pages = [
        [0, 10],
        [10, 10],
        [20, 10],
        [30, 10],
        [0, 100],
        [3, 4],
        [Math.max(0, want.length - 2), 5],
        [want.length + 5, 5],
      ];
      const full = {};
      for (const key of ['one', 'four']) full[key] = await boardGet(readers[key], board, { offset: 0, limit: 100 });
      // Members without a display name appear under the same pseudonym on both.
      assert.deepEqual(full.four.entries, full.one.entries, `${scope}: shards 4 = shards 1`);
      const named = full.one.entries.map((e, i) => ({ ...e, name: want[i].name === undefined ? undefined : e.name }));
      assert.deepEqual(named, want, `${scope}: as uploaded`);
      assert.equal(full.one.entries.filter((e) => /^member-[0-9a-f]{4}$/.test(e.name)).length, pseudonyms);
      for (const [offset, limit] of pages) {
        const got = {};
        for (const key of ['one', 'four']) got[key] = await boardGet(readers[key], board, { offset, limit });
        assert.deepEqual(got.four, { ...got.one, re: got.four.re }, `${scope} offset ${offset} limit ${limit}`);
        assert.deepEqual(got.one.entries, full.one.entries.slice(offset, offset + limit), `${scope} page ${offset}+${limit}`);
        assert.deepEqual([got.one.size, got.one.offset], [want.length, offset]);
        compared++;
      }
    }

    // Ranks, with their neighbours, for members across the table (17 left the boards;
    // 40..43 tie).
    for (const i of [0, 5, 9, 13, 17, 21, 33, 39, 40, 41, 42, 43]) {
      const m = model[i];
      for (const scope of ['all', ...m.scopes(W).slice(1), 'district:north']) {
        const board = `week:${W}:${scope}`;
        const r1 = await on.one[i].rank(board);
        const r4 = await on.four[i].rank(board);
        assert.deepEqual({ ...r4, re: undefined }, { ...r1, re: undefined }, `member ${i} on ${scope}`);
        const want = expected(model, W, scope);
        const at = ranked(model, W, scope).indexOf(m);
        if (at < 0) {
          assert.equal(r1.on_board, false, `member ${i} is not on ${scope}`);
          continue;
        }
        assert.equal(r1.on_board, true);
        assert.equal(r1.rank, at + 1, `member ${i} rank on ${scope}`);
        assert.equal(r1.score, m.score(W));
        assert.equal(r1.size, want.length);
        const full = (await boardGet(readers.one, board, { limit: 100 })).entries;
        assert.deepEqual(r1.above, full.slice(Math.max(0, at - 2), at), `above member ${i} on ${scope}`);
        assert.deepEqual(r1.below, full.slice(at + 1, at + 3), `below member ${i} on ${scope}`);
        compared++;
      }
    }

    // The shards=4 Redis holds board keys on several shard tags; shards=1 on {s0} only.
    const tags = (srv) => new Set(boardKeys(srv).map((k) => /^fit:\{(s\d+)\}:lb:/.exec(k)[1]));
    const t4 = tags(four);
    const t1 = tags(one);
    console.log(`# board keys on shard tags: shards=4 -> ${[...t4].sort()}, shards=1 -> ${[...t1]}; ${compared} reads compared`);
    assert.ok(t4.size >= 3, `shards=4 spreads board keys over ${[...t4]}`);
    assert.deepEqual([...t1], ['s0']);
    for (const x of [...on.one, ...on.four].map((m) => m.c).concat(Object.values(readers))) await x.closeAndWait();
  });
});

/* ------------------------------------------------------------------ */

/*
 * Bytes on their way to a local TCP client that it has not read yet: the
 * client socket's rx_queue plus the server socket's tx_queue (/proc/net/tcp).
 */
function bytesInFlight(clientPort) {
  let total = 0;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 5) continue;
      const port = (addr) => parseInt(addr.split(':').pop(), 16);
      const [tx, rx] = cols[4].split(':').map((h) => parseInt(h, 16));
      if (port(cols[1]) === clientPort) total += rx;
      else if (port(cols[2]) === clientPort) total += tx;
    }
  }
  return total;
}

/*
 * 100 members with names of 4-byte characters, each on the 4 boards (all,
 * district, team, age) of 4 past weeks: 16 boards of 100, a push of one
 * is ~12 KB. Distinct scores (10 + i), so the order never depends on time.
 */
async function bigBoards(srv) {
  const N = 100;
  const weeks = [weekAgo(1), weekAgo(2), weekAgo(3), weekAgo(4)];
  const year = Number(weeks[0].slice(0, 4));
  const team = uniq('big').toLowerCase();
  const members = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      Member.login(srv, uniq(`big${i}`), {
        display_name: '🏃'.repeat(20) + String(i).padStart(4, '0'),
        district: 'kwun-tong',
        team,
        birth_year: year - 40,
      })
    )
  );
  await Promise.all(
    members.map(async (m, i) => {
      const items = weeks.map((w) => m.item(w, 10 + i));
      const r = await m.c.request({ type: 'activity.upload', activities: items.map((x) => x.item) });
      assert.deepEqual(r.results.map((x) => x.status), ['created', 'created', 'created', 'created']);
      items.forEach((x) => m.book(x));
    })
  );
  const boards = weeks.flatMap((w) => ['all', 'district:kwun-tong', `team:${team}`, 'age:35-49'].map((s) => `week:${w}:${s}`));
  // The leader (highest score) is the one who keeps scoring: scores stay distinct.
  return { weeks, members, boards, leader: members[N - 1] };
}

/* Subscribes c to every board with limit 100; returns the largest snapshot's size in bytes. */
async function subscribeAll(c, big) {
  let bytes = 0;
  for (const board of big.boards) {
    const r = await subscribe(c, board, 100);
    const [, week, ...scope] = board.split(':');
    assert.deepEqual(r.entries, expected(big.members, week, scope.join(':')));
    bytes = Math.max(bytes, Buffer.byteLength(JSON.stringify(r)));
  }
  return bytes;
}

/*
 * Keeps the boards changing while `paused` does not read: each round the
 * leader adds a minute in one week (its 4 boards change), and the round ends
 * when `reader` got the push for it (so a tick never carries more than 4
 * boards). When the kernel buffers towards `paused` stop filling, it goes on
 * for `extraMs` (the server queues meanwhile), then resumes reading `paused`
 * and goes on until stop() says so or 30 s have passed.
 */
async function drive(big, reader, paused, { extraMs = 1500, stop }) {
  const port = paused.ws._socket.localPort;
  paused.ws._socket.pause();
  const t0 = performance.now();
  const st = { uploads: 0, maxWait: 0, peak: 0, resumedAt: null, t0 };
  let lastGrowth = t0;
  const m = big.leader;
  while (!stop(st) && performance.now() < t0 + 30000) {
    const w = big.weeks[st.uploads % 4];
    const tUp = performance.now();
    await m.walk(w, 1);
    st.uploads++;
    const score = m.score(w);
    await boardPush(reader, `week:${w}:all`, (p) => p.entries[0]?.score === score, 2000, `with the leader at ${score}`);
    st.maxWait = Math.max(st.maxWait, performance.now() - tUp);
    reader.pushes.length = 0;
    const now = performance.now();
    const inFlight = bytesInFlight(port);
    if (inFlight > st.peak + 4096) {
      st.peak = inFlight;
      lastGrowth = now;
    }
    // (Without /proc/net/tcp to look at, read again after 15 s.)
    const full = st.peak > 0 ? now - lastGrowth > extraMs : now - t0 > 15000;
    if (!st.resumedAt && full) {
      st.resumedAt = now;
      paused.ws._socket.resume();
    }
  }
  return st;
}

describe('slow consumers (tick 50 ms)', { skip: onlyOneRedis }, () => {
  let tight, roomy; // max_queue_bytes 65536 (the minimum) and 4 MB (the default)
  let bigTight, bigRoomy;
  const TICK = 50;
  const QUEUE = 65536;
  before(async () => {
    [tight, roomy] = await Promise.all([
      startServer({ env: { ...FAST, FITSYNC_MAX_QUEUE_BYTES: String(QUEUE), FITSYNC_BOARDS_TICK_MS: String(TICK) } }),
      startServer({ env: { ...FAST, FITSYNC_BOARDS_TICK_MS: String(TICK) } }),
    ]);
    [bigTight, bigRoomy] = await Promise.all([bigBoards(tight), bigBoards(roomy)]);
  });
  after(async () => {
    await Promise.all([tight?.stop(), roomy?.stop()]);
  });

  it('one that stops reading is cut off with 1008 "send queue full"; one on the same boards keeps receiving', async (t) => {
    const slow = await tight.login(uniq('slow'), 'screen');
    const normal = await tight.login(uniq('normal'), 'screen');
    slow.keepMessages = false;
    normal.keepMessages = false;
    const pushBytes = await subscribeAll(slow, bigTight);
    await subscribeAll(normal, bigTight);
    // A round changes one week's 4 boards: that tick's pushes fit the queue, 16 boards' do not.
    assert.ok(4 * pushBytes < QUEUE && 16 * pushBytes > 2 * QUEUE, `push of ${pushBytes} bytes`);
    let slowBytes = 0;
    slow.ws.on('message', (data) => {
      slowBytes += data.length;
      slow.pushes.length = 0;
    });
    let closedAt = null;
    slow.closed.then(() => (closedAt = performance.now()));

    const st = await drive(bigTight, normal, slow, { stop: () => closedAt !== null });
    if (!closedAt) await withTimeout(slow.closed, 5000, 'the slow client to be closed').catch(() => {});
    const ms = (x) => (x ? `${(x - st.t0).toFixed(0)} ms` : 'never');
    t.diagnostic(
      `slow client: kernel buffers took ${st.peak} bytes, read again after ${ms(st.resumedAt)}, ` +
        `${slowBytes} bytes read, closed ${JSON.stringify(slow.closeInfo)} after ${ms(closedAt)}; ` +
        `normal: ${st.uploads} uploads each pushed to it, longest wait ${st.maxWait.toFixed(0)} ms`
    );
    assert.ok(st.resumedAt, 'the kernel buffers filled up within 30 s');
    assert.deepEqual(slow.closeInfo, { code: 1008, reason: 'send queue full' });
    assert.ok(slowBytes < st.uploads * 4 * pushBytes, 'the slow client got less than everything');
    assert.ok(st.maxWait < 1000, 'the normal subscriber was never held up');

    // The normal subscriber is still there, and still gets pushes.
    assert.ok(normal.isOpen);
    const lead = bigTight.members[0];
    await lead.walk(bigTight.weeks[0], 600);
    const want = expected(bigTight.members, bigTight.weeks[0], 'all');
    assert.equal(want[0].name, lead.name);
    await boardPush(normal, `week:${bigTight.weeks[0]}:all`, sameEntries(want), 2000, 'after the cut-off');
    await normal.closeAndWait();
  });

  it('one that pauses with room in its queue gets the newest state of every board when it reads again', async (t) => {
    const paused = await roomy.login(uniq('paused'), 'screen');
    const normal = await roomy.login(uniq('normal'), 'screen');
    paused.keepMessages = false;
    normal.keepMessages = false;
    await subscribeAll(paused, bigRoomy);
    await subscribeAll(normal, bigRoomy);
    const got = []; // [board, version, entries] in the order read
    paused.ws.on('message', (data) => {
      const p = JSON.parse(data);
      if (p.type === 'leaderboard') got.push([p.board, p.version, p.entries]);
      paused.pushes.length = 0;
    });
    let normalPushes = 0;
    normal.ws.on('message', () => normalPushes++);

    // Read again once the kernel buffers are full and the server has queued for a while.
    const st = await drive(bigRoomy, normal, paused, { stop: (s) => s.resumedAt !== null });
    const sent = normalPushes;
    // Now everything it was sent arrives, ending with the state of each board now.
    const final = Object.fromEntries(
      bigRoomy.boards.map((b) => {
        const [, week, ...scope] = b.split(':');
        return [b, JSON.stringify(expected(bigRoomy.members, week, scope.join(':')))];
      })
    );
    const last = () => {
      const l = {};
      for (const [b, , e] of got) l[b] = JSON.stringify(e);
      return l;
    };
    await waitFor(() => bigRoomy.boards.every((b) => last()[b] === final[b]), {
      timeout: 10000,
      interval: 50,
      what: 'the newest state of all 16 boards',
    });
    t.diagnostic(
      `paused ${((st.resumedAt - st.t0) / 1000).toFixed(1)} s with ${st.peak} bytes in kernel buffers; ` +
        `the other subscriber got ${sent} pushes, the paused one ${got.length} (stale ones replaced)`
    );
    assert.equal(paused.closeInfo, null, 'not cut off: its queue stayed under max_queue_bytes');
    assert.ok(paused.isOpen);
    // Stale pushes were replaced while queued: fewer arrived, in version order, per board.
    assert.ok(got.length < sent, `${got.length} pushes read after the pause, ${sent} sent to a reader`);
    for (const b of bigRoomy.boards) {
      const vs = got.filter(([x]) => x === b).map(([, v]) => v);
      assert.deepEqual(vs, [...vs].sort((x, y) => x - y), `versions of ${b} in order`);
      assert.equal(new Set(vs).size, vs.length, `no version of ${b} twice`);
    }
    for (const x of [paused, normal]) await x.closeAndWait();
  });

  it('one that reads promptly is not cut off by one tick that changes all 16 of its boards', async (t) => {
    const c = await tight.login(uniq('prompt'), 'screen');
    c.keepMessages = false;
    const pushBytes = await subscribeAll(c, bigTight);
    // One batch puts a minute into each of the 4 weeks: all 16 boards change in the same tick.
    const m = bigTight.leader;
    const items = bigTight.weeks.map((w) => m.item(w, 1));
    const r = await m.c.request({ type: 'activity.upload', activities: items.map((x) => x.item) });
    assert.deepEqual(r.results.map((x) => x.status), ['created', 'created', 'created', 'created']);
    items.forEach((x) => m.book(x));
    const got = new Set();
    try {
      await waitFor(
        () => {
          for (const p of c.pushes.splice(0)) if (p.type === 'leaderboard') got.add(p.board);
          return got.size === bigTight.boards.length || c.closeInfo;
        },
        { timeout: 3000, interval: 20, what: 'a push for each of the 16 boards' }
      );
    } finally {
      t.diagnostic(
        `16 pushes of ~${pushBytes} bytes (${16 * pushBytes} in all, max_queue_bytes ${QUEUE}) in one tick: ` +
          `${got.size} arrived, connection ${c.closeInfo ? JSON.stringify(c.closeInfo) : 'open'}`
      );
    }
    assert.equal(c.closeInfo, null, 'a client that reads is not treated as slow');
    assert.equal(got.size, 16);
    await c.closeAndWait();
  });
});

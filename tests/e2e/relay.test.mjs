// relay.test.mjs: the timed team relay (events) end to end, over real
// WebSockets and HTTP, against a real fitsyncd with its embedded Redis.
//
// The headline test plays a whole charity relay with tools/relay-sim-lib.mjs
// (the engine of the hosts' rehearsal tool, tools/relay-sim.mjs): 250 teams in
// the eight categories of config/events/charity-relay.json, two hours of laps
// at 240x speed, four marshals, ~3% double scans, one marshal offline for 20
// simulated minutes who uploads late, laps after the cut-off, two mistyped
// bibs, two voids and one restore by the host, two awards. The final
// standings (WebSocket and CSV), every crossing's flag and the spectator's
// live boards are then checked against a computation done here, from the
// crossings the simulator generated, with the lap rule as the issue states it:
//
//   per team, crossings in order of `at` (the device's time, never arrival);
//   a crossing counts when start <= at <= start + duration, it is not voided,
//   and at - (the team's previous counted crossing) >= min_lap_s; one closer
//   than that is a double scan (kept, flagged, not counted). Standings: laps
//   descending, then the time of the last counted lap (earlier first);
//   distance = laps x lap_m.
//
// Nothing here reuses server code. Smaller describe blocks hold the edges of
// the rule, idempotency, per-item errors and who may do what on small events.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/relay.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  SOURCE_DIR,
  startServer,
  connect,
  mintToken,
  mintTokenWithTool,
  tempDir,
  waitFor,
  withTimeout,
} from './lib.mjs';
import { runRelay, loadEventFile } from '../../tools/relay-sim-lib.mjs';

const SECRET = 'relay-e2e-secret-0123456789abcdef';
const RELAY_FILE = path.join(SOURCE_DIR, 'config/events/charity-relay.json');
const DOG_FILE = path.join(SOURCE_DIR, 'config/events/dog-run.json');
const MIN = 60000;

/* ------------------------------------------------------------------ */
/* the reference: the lap rule and the standings, computed here        */

/*
 * From a simulator dump: every accepted crossing's flag and the standings.
 * crossings with an error (unknown bibs) were refused and take no part.
 * Returns {flags: Map client_id -> flag, teams: Map bib -> {bib, name,
 * category, laps, last (ms or null), awards}, ranked (all teams, in order)}.
 */
function referenceOf({ start, durationS, minLapS, teams, crossings, corrections = [], awards = [] }) {
  const end = start + durationS * 1000;
  const voided = new Set();
  for (const c of corrections) {
    if (c.op === 'lap.void') voided.add(c.client_id);
    else voided.delete(c.client_id);
  }
  const rows = new Map(
    teams.map((t) => [t.bib, { bib: t.bib, name: t.name, category: t.category, laps: 0, last: null, awards: [] }]),
  );
  const byBib = new Map();
  for (const c of crossings) {
    if (!rows.has(c.bib)) continue;
    if (!byBib.has(c.bib)) byBib.set(c.bib, []);
    byBib.get(c.bib).push({ id: c.client_id, at: Date.parse(c.at) });
  }
  const flags = new Map();
  for (const [bib, list] of byBib) {
    // Equal times (two marshals, one millisecond) fall back to the client_id.
    list.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const team = rows.get(bib);
    for (const c of list) {
      let flag;
      if (voided.has(c.id)) flag = 'void';
      else if (c.at < start) flag = 'early';
      else if (c.at > end) flag = 'late';
      else if (team.last !== null && c.at - team.last < minLapS * 1000) flag = 'double';
      else {
        flag = 'counted';
        team.laps++;
        team.last = c.at;
      }
      flags.set(c.id, flag);
    }
  }
  for (const a of awards) {
    const t = rows.get(a.bib);
    if (t && !t.awards.includes(a.award)) t.awards.push(a.award);
  }
  // Laps descending, then the earlier last lap; a team without laps after all
  // with laps; exact ties (never seen in a simulation) by bib.
  const ranked = [...rows.values()].sort(
    (a, b) =>
      b.laps - a.laps || (a.last ?? Infinity) - (b.last ?? Infinity) || (a.bib < b.bib ? -1 : a.bib > b.bib ? 1 : 0),
  );
  return { flags, teams: rows, ranked };
}

/* The expected standings rows (as the server lays them out) for a list of ranked teams. */
function expectedRows(ranked, { start, lapM }) {
  return ranked.map((t, i) => ({
    rank: i + 1,
    bib: t.bib,
    name: t.name,
    category: t.category,
    laps: t.laps,
    distance_m: t.laps * lapM,
    last_ms: t.last,
    last_lap_elapsed_s: t.last === null ? null : Math.floor((t.last - start) / 1000),
    awards: t.awards,
  }));
}

/* The server's standings rows, with last_lap_at parsed to ms for comparison. */
const serverRows = (standings) =>
  standings.map((t) => ({
    rank: t.rank,
    bib: t.bib,
    name: t.name,
    category: t.category,
    laps: t.laps,
    distance_m: t.distance_m,
    last_ms: t.last_lap_at === null ? null : Date.parse(t.last_lap_at),
    last_lap_elapsed_s: t.last_lap_elapsed_s,
    awards: t.awards,
  }));

/* deepEqual of two row lists, with the first differing row in the message. */
function assertRows(got, want, what) {
  assert.equal(got.length, want.length, `${what}: number of teams`);
  for (let i = 0; i < want.length; i++) assert.deepEqual(got[i], want[i], `${what}: row ${i + 1} differs`);
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */

/* RFC 4180: rows of fields. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let f = '';
  let q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') ((f += '"'), i++);
      else if (ch === '"') q = false;
      else f += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') (row.push(f), (f = ''));
    else if (ch === '\n') (row.push(f), rows.push(row), (row = []), (f = ''));
    else if (ch !== '\r') f += ch;
  }
  if (f !== '' || row.length) (row.push(f), rows.push(row));
  return rows;
}

/* GET with optional bearer token -> {status, headers, text}. */
function httpGetAuth(port, urlPath, token, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const headers = token === undefined ? {} : { Authorization: `Bearer ${token}` };
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers, timeout }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: timed out`)));
    req.on('error', reject);
  });
}

function assertError(reply, code, field) {
  assert.equal(reply.type, 'error', JSON.stringify(reply));
  assert.equal(reply.code, code, JSON.stringify(reply));
  if (field !== undefined) assert.equal(reply.field, field, JSON.stringify(reply));
}

function assertOk(reply, type) {
  assert.equal(reply.type, type, JSON.stringify(reply));
  return reply;
}

/* Connects and says hello with a token; returns the client. */
async function signIn(srv, token, device = 'dev') {
  const c = await connect(srv.url);
  const w = await c.request({ type: 'hello', token, device_id: device });
  assert.equal(w.type, 'welcome', JSON.stringify(w));
  return c;
}

const iso = (ms) => new Date(ms).toISOString();

/* ------------------------------------------------------------------ */

describe('timed team relay', () => {
  let srv;
  const clients = [];
  const keep = (c) => (clients.push(c), c);

  before(async () => {
    srv = await startServer({
      secret: SECRET,
      env: { FITSYNC_RATE_MESSAGES_PER_S: '100000', FITSYNC_RATE_BURST: '100000' },
    });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.closeAndWait().catch(() => {})));
    if (srv) await srv.stop();
  });

  describe('the event files', () => {
    it("charity-relay.json: a timed relay with the issue's two groups of categories", () => {
      const def = loadEventFile(RELAY_FILE);
      assert.equal(def.kind, 'timed_relay');
      assert.equal(def.duration_s, 7200);
      assert.ok(def.min_lap_s > 0 && def.lap_m > 0);
      const by = (g) => def.categories.filter((c) => c.group === g).map((c) => c.id);
      assert.deepEqual(by('competitive'), ['disciplined-services', 'sports-organisations', 'open-competitive']);
      assert.deepEqual(by('charity'), [
        'primary-school',
        'secondary-school',
        'parent-child',
        'inclusive',
        'open-charity',
      ]);
      assert.equal(def.categories.length, 8);
    });

    it('both files are accepted by event.create as they are', async () => {
      for (const file of [RELAY_FILE, DOG_FILE]) {
        const body = JSON.parse(fs.readFileSync(file, 'utf8'));
        const host = keep(await signIn(srv, mintToken(SECRET, { sub: 'file-host', role: 'host', event: body.event })));
        const r = await host.request(body);
        assertOk(r, 'event.create');
        assert.equal(r.status, 'created');
        assert.deepEqual(r.definition.categories, body.categories);
        assert.equal(assertOk(await host.request(body), 'event.create').status, 'duplicate');
      }
    });
  });

  describe('a simulated two-hour charity relay (250 teams, 240x)', () => {
    let dump, ref, host, hostToken, spectator;
    const seen = []; // {t, msg}: the spectator's leaderboard pushes
    let runStart = 0;
    let runEnd = 0;
    /* The lap voided and not restored: was it scanned twice (so that its second scan now counts)? */
    const stillVoidedHasDouble = () => {
      const v = dump.corrections[1];
      const lap = dump.crossings.find((c) => c.client_id === v.client_id);
      return dump.crossings.some(
        (c) => c.kind === 'double' && c.bib === lap.bib && c.at_ms > lap.at_ms && c.at_ms - lap.at_ms < 10000,
      );
    };
    const boardsOf = (id) => [
      `event:${id}:all`,
      `event:${id}:cat:disciplined-services`,
      `event:${id}:cat:primary-school`,
      `event:${id}:cat:parent-child`,
      `event:${id}:cat:open-charity`,
    ];

    before(async () => {
      const def = loadEventFile(RELAY_FILE);
      const eventId = `${def.event}-e2e`;
      // The host token from the C tool (as hosts get theirs).
      hostToken = mintTokenWithTool({ sub: 'host-sim', role: 'host', event: eventId, secret: SECRET });
      dump = await runRelay({
        url: srv.url,
        def,
        suffix: '-e2e',
        hostToken,
        teams: 250,
        speed: 240,
        marshals: 4,
        doubleScanRate: 0.03,
        offlineMarshalMinutes: 20,
        lateLaps: 5,
        unknownBibs: 2,
        corrections: 2,
        restores: 1,
        seed: 2026,
        onReady: async ({ eventId: id }) => {
          // A spectator: no hello, just the public boards.
          spectator = keep(await connect(srv.url));
          spectator.ws.on('message', (data) => {
            const m = JSON.parse(data.toString('utf8'));
            if (m.type === 'leaderboard' && m.re === undefined) seen.push({ t: Date.now(), msg: m });
          });
          for (const board of boardsOf(id)) {
            const r = await spectator.request({ type: 'leaderboard.subscribe', board, limit: 10 });
            assert.equal(r.type, 'leaderboard.subscribe', JSON.stringify(r));
          }
          runStart = Date.now();
        },
      });
      runEnd = Date.now();
      ref = referenceOf({
        start: dump.event.start_ms,
        durationS: dump.event.duration_s,
        minLapS: dump.event.min_lap_s,
        teams: dump.teams,
        crossings: dump.crossings.filter((c) => !c.error),
        corrections: dump.corrections,
        awards: dump.awards,
      });
      host = keep(await signIn(srv, hostToken, 'test-host'));
    });

    it('the simulation played what was asked', () => {
      const s = dump.stats;
      assert.equal(dump.teams.length, 250);
      assert.equal(new Set(dump.teams.map((t) => t.category)).size, 8, 'every category has teams');
      assert.equal(dump.event.duration_s, 7200);
      const laps = dump.crossings.filter((c) => c.kind === 'lap').length;
      const doubles = dump.crossings.filter((c) => c.kind === 'double').length;
      assert.ok(laps > 250 * 30, `a realistic number of laps (${laps})`);
      assert.ok(doubles / laps > 0.015 && doubles / laps < 0.05, `about 3% double scans (${doubles}/${laps})`);
      assert.equal(dump.crossings.filter((c) => c.kind === 'late').length, 5);
      assert.ok(dump.crossings.filter((c) => c.kind === 'late').every((c) => c.at_ms > dump.event.start_ms + 7200e3));
      assert.equal(s.rejected, 2, 'the two mistyped bibs, and nothing else, were refused');
      assert.ok(dump.crossings.filter((c) => c.error).every((c) => c.kind === 'unknown' && c.error === 'not_found'));
      // No crossing in the future, none sent before its time.
      for (const c of dump.crossings) assert.equal(Date.parse(c.at), c.at_ms, c.at);
      // The offline marshal's queue went up late, after later crossings of others.
      const off = dump.offline;
      assert.equal((off.to_ms - off.from_ms) / MIN, 20);
      assert.ok(off.uploaded > 100, `the offline marshal uploaded a queue (${off.uploaded})`);
      const lateBatches = dump.batches.filter((b) => b.late);
      assert.ok(lateBatches.length >= 1);
      const firstLate = dump.batches.indexOf(lateBatches[0]);
      const earliest = Math.min(...lateBatches[0].laps.map((l) => Date.parse(l.at)));
      assert.ok(
        dump.batches
          .slice(0, firstLate)
          .some((b) => b.marshal !== off.marshal && b.laps.some((l) => Date.parse(l.at) > earliest + 10 * MIN)),
        'other marshals had sent crossings more than 10 minutes newer before the late upload',
      );
      // Two voids and one restore, each answered.
      assert.deepEqual(
        dump.corrections.map((c) => c.op),
        ['lap.void', 'lap.void', 'lap.restore'],
      );
      assert.equal(dump.corrections[0].status, 'void');
      assert.equal(dump.corrections[1].status, 'void');
      assert.notEqual(dump.corrections[2].status, 'void');
      assert.ok(s.run_wall_ms < 90000, `the run took ${s.run_wall_ms} ms`);
    });

    it('final standings per category and overall equal the independent computation', () => {
      const res = dump.results;
      const def = loadEventFile(RELAY_FILE);
      assert.equal(res.event, dump.event.id);
      assert.equal(res.state, 'finished');
      assert.equal(Date.parse(res.started_at), dump.event.start_ms);
      assert.equal(res.lap_m, 400);
      assert.equal(res.duration_s, 7200);
      assert.deepEqual(
        res.categories.map((c) => ({ id: c.id, name: c.name, group: c.group })),
        def.categories.map((c) => ({ id: c.id, name: c.name, group: c.group })),
        'categories in the order of the event file',
      );
      const opt = { start: dump.event.start_ms, lapM: 400 };
      for (const cat of res.categories)
        assertRows(
          serverRows(cat.standings),
          expectedRows(
            ref.ranked.filter((t) => t.category === cat.id),
            opt,
          ),
          cat.id,
        );
      assertRows(serverRows(res.overall), expectedRows(ref.ranked, opt), 'overall');
      // Every real lap counts except the one still voided (whose double scan, if it had one, counts instead).
      const naive = dump.crossings.filter((c) => c.kind === 'lap').length;
      const counted = ref.ranked.reduce((s, t) => s + t.laps, 0);
      assert.equal(counted, naive - 1 + (stillVoidedHasDouble() ? 1 : 0));
      assert.ok(res.overall.some((t) => t.awards.includes('Most creative costume')));
    });

    it("every crossing's flag (event.laps) follows the lap rule", async () => {
      const got = new Map();
      const replies = await Promise.all(
        dump.teams.map((t) =>
          withTimeout(host.pipeline({ type: 'event.laps', event: dump.event.id, bib: t.bib }), 10000, 'event.laps'),
        ),
      );
      for (const r of replies) {
        assertOk(r, 'event.laps');
        for (const l of r.laps) got.set(l.client_id, l.status);
      }
      assert.equal(got.size, ref.flags.size, 'every accepted crossing is kept');
      const wrong = [...ref.flags].filter(([id, f]) => got.get(id) !== f);
      assert.deepEqual(
        wrong.map(([id, f]) => `${id}: want ${f}, got ${got.get(id)}`),
        [],
      );
      const tally = {};
      for (const f of got.values()) tally[f] = (tally[f] || 0) + 1;
      // Order by `at`, not arrival: the late upload changed flags given on receipt
      // (a second scan that arrived first was counted, then became the double).
      const off = dump.offline;
      const changed = dump.crossings.filter((c) => !c.error && c.status_at_receipt !== got.get(c.client_id));
      assert.ok(
        changed.some(
          (c) =>
            c.status_at_receipt === 'counted' &&
            got.get(c.client_id) === 'double' &&
            c.at_ms >= off.from_ms &&
            c.at_ms < off.to_ms,
        ),
        `a crossing counted on receipt became a double scan once the offline marshal's queue arrived (${changed.length} flags changed)`,
      );
      assert.equal(tally.late, 5);
      assert.equal(tally.void, 1);
      const doubles = dump.crossings.filter((c) => c.kind === 'double').length;
      assert.equal(tally.double, doubles - (stillVoidedHasDouble() ? 1 : 0), JSON.stringify(tally));
    });

    it('results.csv over HTTP: the same standings for the host and staff; 401 without a token, 403 for another event', async () => {
      const url = `/api/v1/events/${dump.event.id}/results.csv`;
      const r = await httpGetAuth(srv.port, url, hostToken);
      assert.equal(r.status, 200, r.text);
      assert.match(r.headers['content-type'], /^text\/csv/);
      const rows = parseCsv(r.text);
      assert.deepEqual(rows[0], [
        'category',
        'rank',
        'bib',
        'team',
        'laps',
        'distance_m',
        'last_lap_at',
        'last_lap_elapsed_s',
        'awards',
      ]);
      const want = [];
      for (const c of loadEventFile(RELAY_FILE).categories)
        for (const t of expectedRows(
          ref.ranked.filter((x) => x.category === c.id),
          { start: dump.event.start_ms, lapM: 400 },
        ))
          want.push([
            c.id,
            String(t.rank),
            t.bib,
            t.name,
            String(t.laps),
            String(t.distance_m),
            t.last_ms,
            String(t.last_lap_elapsed_s),
            t.awards.join('; '),
          ]);
      const got = rows.slice(1).map((x) => [...x.slice(0, 6), Date.parse(x[6]), ...x.slice(7)]);
      assertRows(got, want, 'results.csv');

      const staff = await httpGetAuth(srv.port, url, mintToken(SECRET, { sub: 'staff-1', role: 'staff' }));
      assert.equal(staff.status, 200);
      assert.equal(staff.text, r.text);

      assert.equal((await httpGetAuth(srv.port, url)).status, 401);
      assert.equal((await httpGetAuth(srv.port, url, 'not-a-token')).status, 401);
      assert.equal(
        (
          await httpGetAuth(
            srv.port,
            url,
            mintToken('another-secret-0123456789', { sub: 'h', role: 'host', event: dump.event.id }),
          )
        ).status,
        401,
      );
      const staffToken = mintToken(SECRET, { sub: 'staff-1', role: 'staff' });
      assert.equal((await httpGetAuth(srv.port, '/api/v1/events/no-such-event/results.csv', staffToken)).status, 404);
      const other = mintTokenWithTool({ sub: 'host-b', role: 'host', event: 'dog-run-2026', secret: SECRET });
      assert.equal((await httpGetAuth(srv.port, url, other)).status, 403);
      assert.equal((await httpGetAuth(srv.port, url, mintToken(SECRET, { sub: 'amy', role: 'member' }))).status, 403);
      const marshal = assertOk(
        await host.request({ type: 'marshal.token', event: dump.event.id, marshal: 'm1' }),
        'marshal.token',
      );
      assert.equal((await httpGetAuth(srv.port, url, marshal.token)).status, 403);
    });

    it('a spectator without a token saw the category boards move during the run', async () => {
      const boards = boardsOf(dump.event.id);
      for (const board of boards) {
        const pushes = seen.filter((p) => p.msg.board === board && p.t >= runStart && p.t <= runEnd).map((p) => p.msg);
        assert.ok(pushes.length >= 5, `${board}: ${pushes.length} pushes during the run`);
        const texts = new Set(pushes.map((m) => JSON.stringify(m.entries)));
        assert.ok(texts.size >= 5, `${board}: the entries changed (${texts.size} distinct)`);
        const top = (m) => (m.entries[0] ? m.entries[0].laps : 0);
        assert.ok(top(pushes[pushes.length - 1]) > top(pushes[0]) + 20, `${board}: the leader's laps grew`);
        for (let i = 1; i < pushes.length; i++)
          assert.ok(pushes[i].version > pushes[i - 1].version, `${board}: versions increase`);
        for (const m of pushes) {
          assert.ok(m.entries.length <= 10);
          for (const e of m.entries)
            if (board.includes(':cat:')) assert.equal(`event:${dump.event.id}:cat:${e.category}`, board);
        }
      }
      // After the last change, each board's newest push is the final top 10.
      for (const board of boards) {
        const cat = board.split(':cat:')[1];
        const want = ref.ranked
          .filter((t) => !cat || t.category === cat)
          .slice(0, 10)
          .map((t, i) => ({ rank: i + 1, bib: t.bib, laps: t.laps, last_ms: t.last, distance_m: t.laps * 400 }));
        await waitFor(
          () => {
            const last = seen.filter((p) => p.msg.board === board).pop();
            if (!last) return false;
            const got = last.msg.entries.map((e) => ({
              rank: e.rank,
              bib: e.bib,
              laps: e.laps,
              last_ms: Date.parse(e.last_lap_at),
              distance_m: e.distance_m,
            }));
            return JSON.stringify(got) === JSON.stringify(want);
          },
          { timeout: 5000, what: `${board}'s last push to show the final top 10` },
        );
      }
    });

    it('the spectator is refused everything else, and stays connected', async () => {
      const id = dump.event.id;
      const asks = [
        [{ type: 'week.get' }, 'unauthenticated'],
        [
          { type: 'lap.record', event: id, laps: [{ client_id: 'spy-1', bib: '101', at: iso(Date.now() - MIN) }] },
          'unauthenticated',
        ],
        [{ type: 'event.results', event: id }, 'unauthenticated'],
        [{ type: 'event.get', event: id }, 'unauthenticated'],
        [{ type: 'event.audit', event: id }, 'unauthenticated'],
        [{ type: 'event.laps', event: id, bib: '101' }, 'unauthenticated'],
        [{ type: 'lap.void', event: id, client_id: dump.crossings[0].client_id, reason: 'x' }, 'unauthenticated'],
        [{ type: 'team.register', event: id, bib: '999', name: 'Spies', category: 'inclusive' }, 'unauthenticated'],
        [{ type: 'marshal.token', event: id, marshal: 'spy' }, 'unauthenticated'],
        [{ type: 'activity.upload', activities: [] }, 'unauthenticated'],
        [{ type: 'rank.get', board: 'week:current:all' }, 'unauthenticated'],
        [{ type: 'leaderboard.get', board: 'week:current:all' }, 'unauthenticated'],
        [{ type: 'leaderboard.subscribe', board: 'week:current:all' }, 'unauthenticated'],
      ];
      for (const [msg, code] of asks) assertError(await spectator.request(msg), code);
      assert.ok(spectator.isOpen, 'a refusal does not close the connection');
      const r = assertOk(
        await spectator.request({ type: 'leaderboard.get', board: `event:${id}:cat:inclusive`, limit: 3 }),
        'leaderboard.get',
      );
      assert.equal(r.entries.length, 3);
      assert.deepEqual(
        r.entries.map((e) => e.bib),
        ref.ranked
          .filter((t) => t.category === 'inclusive')
          .slice(0, 3)
          .map((t) => t.bib),
      );
      assertError(await spectator.request({ type: 'leaderboard.get', board: 'event:no-such-event:all' }), 'not_found');
    });

    it('event.audit lists the corrections with their reasons, for hosts only', async () => {
      const r = assertOk(await host.request({ type: 'event.audit', event: dump.event.id }), 'event.audit');
      const fixes = r.entries.filter((e) => e.op === 'lap.void' || e.op === 'lap.restore');
      assert.deepEqual(
        fixes.map((e) => ({ op: e.op, lap: e.lap, bib: e.bib, reason: e.reason, by: e.by })),
        dump.corrections.map((c) => ({ op: c.op, lap: c.client_id, bib: c.bib, reason: c.reason, by: 'host-sim' })),
      );
      for (const e of fixes) assert.ok(!Number.isNaN(Date.parse(e.at)), JSON.stringify(e));
      assert.deepEqual(
        r.entries.filter((e) => e.op === 'award').map((e) => [e.bib, e.award]),
        dump.awards.map((a) => [a.bib, a.award]),
      );
      for (const op of ['create', 'start', 'finish'])
        assert.ok(
          r.entries.some((e) => e.op === op),
          `audit has ${op}`,
        );
      const marshal = assertOk(
        await host.request({ type: 'marshal.token', event: dump.event.id, marshal: 'm3' }),
        'marshal.token',
      );
      const m = keep(await signIn(srv, marshal.token, 'm3-phone'));
      assertError(await m.request({ type: 'event.audit', event: dump.event.id }), 'forbidden');
    });

    it('re-sending a lap batch returns the same statuses and changes nothing', async () => {
      const before = assertOk(
        await host.request({ type: 'event.results', event: dump.event.id }),
        'event.results',
      ).results;
      assert.deepEqual(before, dump.results);
      const lateBatch = dump.batches.filter((b) => b.late).sort((a, b) => b.laps.length - a.laps.length)[0];
      const lastBatch = dump.batches[dump.batches.length - 1];
      for (const batch of [lateBatch, lastBatch]) {
        const t = assertOk(
          await host.request({ type: 'marshal.token', event: dump.event.id, marshal: batch.marshal }),
          'marshal.token',
        );
        const m = keep(await signIn(srv, t.token, `${batch.marshal}-again`));
        const r1 = assertOk(
          await m.request({ type: 'lap.record', event: dump.event.id, laps: batch.laps }, 10000),
          'lap.record',
        );
        const r2 = assertOk(
          await m.request({ type: 'lap.record', event: dump.event.id, laps: batch.laps }, 10000),
          'lap.record',
        );
        assert.deepEqual(r2.results, r1.results);
        assert.equal(r1.event_state, 'finished');
        assert.deepEqual(
          r1.results.map((x) => x.status),
          batch.laps.map((l) => ref.flags.get(l.client_id) || 'error'),
          "the statuses are the crossings' current flags",
        );
      }
      // The last batch's flags cannot have changed since it was sent.
      const t = assertOk(
        await host.request({ type: 'marshal.token', event: dump.event.id, marshal: lastBatch.marshal }),
        'marshal.token',
      );
      const m = keep(await signIn(srv, t.token, 'again-2'));
      const r = assertOk(
        await m.request({ type: 'lap.record', event: dump.event.id, laps: lastBatch.laps }),
        'lap.record',
      );
      assert.deepEqual(
        r.results.map((x) => (x.code ? `error:${x.code}` : x.status)),
        lastBatch.statuses,
      );
      const after = assertOk(
        await host.request({ type: 'event.results', event: dump.event.id }),
        'event.results',
      ).results;
      assert.deepEqual(after, before);
    });
  });

  describe('the rules on a small event', () => {
    const EV = 'rules-e2e';
    let host, marshal, start;
    const DUR = 1800;
    const t = (s) => iso(start + s * 1000); // s seconds after the official start

    before(async () => {
      start = Math.floor((Date.now() - 3600e3) / 1000) * 1000; // the event ran from 1 h ago to 30 min ago
      host = keep(await signIn(srv, mintTokenWithTool({ sub: 'host-r', role: 'host', event: EV, secret: SECRET })));
      assertOk(
        await host.request({
          type: 'event.create',
          event: EV,
          name: 'Rules',
          kind: 'timed_relay',
          starts_at: iso(start),
          duration_s: DUR,
          lap_m: 400,
          min_lap_s: 60,
          categories: [
            { id: 'open', name: 'Open', group: 'competitive' },
            { id: 'kids', name: 'Kids', group: 'charity' },
          ],
        }),
        'event.create',
      );
      const csv = 'bib,name,category\n1,Alpha,open\n2,Bravo,open\n3,Charlie,kids\n4,Delta,kids\n5,Echo,open\n';
      const imp = assertOk(await host.request({ type: 'team.import', event: EV, csv }), 'team.import');
      assert.equal(imp.accepted, 5);
      const mt = assertOk(await host.request({ type: 'marshal.token', event: EV, marshal: 'gate' }), 'marshal.token');
      marshal = keep(await signIn(srv, mt.token, 'gate-phone'));
    });

    const record = async (laps, who = marshal) =>
      assertOk(await who.request({ type: 'lap.record', event: EV, laps }), 'lap.record');
    const flagsOf = async (bib) =>
      Object.fromEntries(
        assertOk(await host.request({ type: 'event.laps', event: EV, bib }), 'event.laps').laps.map((l) => [
          l.client_id,
          l.status,
        ]),
      );

    it('crossings before the start are early; after it they count; the start sets the boundary', async () => {
      let r = await record([{ client_id: 'pre-1', bib: '1', at: t(-30) }]);
      assert.equal(r.event_state, 'scheduled');
      assert.equal(r.results[0].status, 'early');
      assertOk(await host.request({ type: 'event.start', event: EV, at: t(0) }), 'event.start');
      r = await record([
        { client_id: 'b1-0', bib: '1', at: t(0) }, // exactly at the start: counts
        { client_id: 'b1-1', bib: '1', at: t(60) }, // exactly min_lap_s later: counts
        { client_id: 'b1-2', bib: '1', at: iso(start + 119999) }, // 59.999 s later: double scan
        { client_id: 'b1-3', bib: '1', at: t(DUR) }, // exactly at the cut-off: counts
        { client_id: 'b1-4', bib: '1', at: iso(start + DUR * 1000 + 1) }, // 1 ms after: late
      ]);
      assert.deepEqual(
        r.results.map((x) => x.status),
        ['counted', 'counted', 'double', 'counted', 'late'],
      );
      assert.deepEqual(await flagsOf('1'), {
        'pre-1': 'early',
        'b1-0': 'counted',
        'b1-1': 'counted',
        'b1-2': 'double',
        'b1-3': 'counted',
        'b1-4': 'late',
      });
    });

    it('a late upload is placed by its time: an earlier crossing turns a counted one into a double scan', async () => {
      let r = await record([{ client_id: 'b2-b', bib: '2', at: t(140) }]);
      assert.equal(r.results[0].status, 'counted');
      r = await record([{ client_id: 'b2-a', bib: '2', at: t(100) }]); // recorded offline, uploaded now
      assert.equal(r.results[0].status, 'counted');
      assert.deepEqual(await flagsOf('2'), { 'b2-a': 'counted', 'b2-b': 'double' });
      // Voiding the earlier one makes the later one count again; restoring undoes it.
      assertOk(
        await host.request({ type: 'lap.void', event: EV, client_id: 'b2-a', reason: 'wrong runner' }),
        'lap.void',
      );
      assert.deepEqual(await flagsOf('2'), { 'b2-a': 'void', 'b2-b': 'counted' });
      const back = assertOk(
        await host.request({ type: 'lap.restore', event: EV, client_id: 'b2-a', reason: 'right runner after all' }),
        'lap.restore',
      );
      assert.equal(back.status, 'counted');
      assert.deepEqual(await flagsOf('2'), { 'b2-a': 'counted', 'b2-b': 'double' });
      const audit = assertOk(await host.request({ type: 'event.audit', event: EV }), 'event.audit').entries;
      assert.deepEqual(
        audit.filter((e) => e.lap === 'b2-a').map((e) => [e.op, e.reason, e.by]),
        [
          ['lap.void', 'wrong runner', 'host-r'],
          ['lap.restore', 'right runner after all', 'host-r'],
        ],
      );
      assertError(await host.request({ type: 'lap.void', event: EV, client_id: 'b2-a' }), 'missing_field', 'reason');
      assertError(
        await host.request({ type: 'lap.void', event: EV, client_id: 'no-such-lap', reason: 'x' }),
        'not_found',
      );
    });

    it('an unknown bib fails only its own item; a crossing in the future too', async () => {
      const r = await record([
        { client_id: 'b3-1', bib: '3', at: t(300) },
        { client_id: 'typo-1', bib: '33', at: t(310) },
        { client_id: 'b3-2', bib: '3', at: t(400) },
        { client_id: 'b3-fut', bib: '3', at: iso(Date.now() + 3600e3) },
      ]);
      assert.equal(r.results[0].status, 'counted');
      assert.equal(r.results[1].code, 'not_found');
      assert.equal(r.results[1].field, 'laps[1].bib');
      assert.equal(r.results[2].status, 'counted');
      assert.equal(r.results[3].code, 'future_time');
      assert.equal(r.accepted, 2);
      assert.equal(r.rejected, 2);
      assert.deepEqual(await flagsOf('3'), { 'b3-1': 'counted', 'b3-2': 'counted' });
    });

    it('lap batches are idempotent by client_id; a different crossing under a used client_id is a conflict', async () => {
      const batch = [
        { client_id: 'b4-1', bib: '4', at: t(500) },
        { client_id: 'b4-2', bib: '4', at: t(505) },
        { client_id: 'b4-3', bib: '4', at: t(620) },
      ];
      const first = await record(batch);
      const res1 = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      const again = await record(batch);
      assert.deepEqual(again.results, first.results);
      assert.deepEqual(
        first.results.map((x) => x.status),
        ['counted', 'double', 'counted'],
      );
      const res2 = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      assert.deepEqual(res2, res1);
      const c = await record([
        { client_id: 'b4-1', bib: '5', at: t(500) },
        { client_id: 'b5-1', bib: '5', at: t(700) },
      ]);
      assert.equal(c.results[0].code, 'conflict');
      assert.equal(c.results[1].status, 'counted');
      assert.deepEqual(await flagsOf('4'), { 'b4-1': 'counted', 'b4-2': 'double', 'b4-3': 'counted' });
    });

    it('team.import with a bad category rejects only that row', async () => {
      const csv =
        'bib,name,category\n10,Foxtrot,open\n11,Golf,no-such-category\n12,Hotel,kids\n1,Alpha,open\n2,Not Bravo,open\n';
      const r = assertOk(await host.request({ type: 'team.import', event: EV, csv }), 'team.import');
      const byLine = Object.fromEntries(r.results.map((x) => [x.line, x]));
      assert.equal(byLine[2].status, 'created');
      assert.equal(byLine[3].status, 'error');
      assert.equal(byLine[3].code, 'invalid_value');
      assert.equal(byLine[4].status, 'created');
      assert.equal(byLine[5].status, 'duplicate');
      assert.equal(byLine[6].status, 'error');
      assert.equal(byLine[6].code, 'conflict');
      assert.equal(r.accepted, 3);
      assert.equal(r.rejected, 2);
      const res = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      assert.deepEqual(res.overall.map((x) => x.bib).sort(), ['1', '10', '12', '2', '3', '4', '5']);
    });

    it('team.import reads RFC 4180 quoted names (a comma, doubled quotes) as one field', async () => {
      const csv = 'bib,name,category\n20,"Smith, Jones & Co",open\n21,"The ""Fast"" Five",kids\n';
      const r = assertOk(await host.request({ type: 'team.import', event: EV, csv }), 'team.import');
      assert.deepEqual(
        r.results.map((x) => x.status),
        ['created', 'created'],
        JSON.stringify(r.results),
      );
      const res = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      const names = Object.fromEntries(res.overall.map((x) => [x.bib, x.name]));
      assert.equal(names['20'], 'Smith, Jones & Co');
      assert.equal(names['21'], 'The "Fast" Five');
    });

    it('standings of the small event follow the rule (laps, then the earlier last lap)', async () => {
      const res = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      const laps = Object.fromEntries(res.overall.map((x) => [x.bib, x.laps]));
      assert.deepEqual([laps['1'], laps['2'], laps['3'], laps['4'], laps['5']], [3, 1, 2, 2, 1]);
      // 3 and 4 both have 2 laps: 3's last (400 s) is earlier than 4's (620 s).
      assert.deepEqual(
        res.categories
          .find((c) => c.id === 'kids')
          .standings.slice(0, 2)
          .map((x) => x.bib),
        ['3', '4'],
      );
      // 2 and 5 both have 1 lap: 2's (100 s) before 5's (700 s).
      const open = res.categories.find((c) => c.id === 'open').standings.map((x) => x.bib);
      assert.ok(open.indexOf('2') < open.indexOf('5'), open.join(','));
      const one = res.overall.find((x) => x.bib === '1');
      assert.equal(one.distance_m, 1200);
      assert.equal(one.last_lap_elapsed_s, DUR);
      assert.equal(Date.parse(one.last_lap_at), start + DUR * 1000);
    });

    it('the live board lists teams in the same order as the results, ties (no laps yet) included', async () => {
      const res = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      assert.ok(res.overall.filter((x) => x.laps === 0).length >= 2, 'some teams tie on no laps');
      const board = assertOk(
        await host.request({ type: 'leaderboard.get', board: `event:${EV}:all`, limit: 50 }),
        'leaderboard.get',
      );
      assert.deepEqual(
        board.entries.map((e) => `${e.rank}:${e.bib}`),
        res.overall.map((x) => `${x.rank}:${x.bib}`),
        'the big screen and the results sheet agree',
      );
    });

    it('a finished event cannot be started again (its results stay as they are)', async () => {
      assert.equal(assertOk(await host.request({ type: 'event.finish', event: EV }), 'event.finish').status, 'ok');
      const before = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      assert.equal(before.state, 'finished');
      const r = await host.request({ type: 'event.start', event: EV, at: t(200) });
      const after = assertOk(await host.request({ type: 'event.results', event: EV }), 'event.results').results;
      assert.deepEqual(
        after,
        before,
        `event.start after event.finish changed the results (reply: ${JSON.stringify(r)})`,
      );
      assert.equal(r.type, 'error', JSON.stringify(r));
    });
  });

  describe('who may do what', () => {
    const EV = 'roles-e2e';
    const PRIV = 'private-e2e';
    let host, start;
    before(async () => {
      start = Math.floor((Date.now() - 2 * 3600e3) / 1000) * 1000;
      host = keep(await signIn(srv, mintToken(SECRET, { sub: 'host-x', role: 'host', event: EV })));
      const body = (event, pub) => ({
        type: 'event.create',
        event,
        name: event,
        kind: 'timed_relay',
        starts_at: iso(start),
        duration_s: 3600,
        lap_m: 400,
        min_lap_s: 60,
        public: pub,
        categories: [{ id: 'open', name: 'Open', group: 'charity' }],
      });
      assertOk(await host.request(body(EV, true)), 'event.create');
      assertOk(
        await host.request({ type: 'team.register', event: EV, bib: '7', name: 'Seven', category: 'open' }),
        'team.register',
      );
      assertOk(await host.request({ type: 'event.start', event: EV, at: iso(start) }), 'event.start');
      const phost = keep(await signIn(srv, mintToken(SECRET, { sub: 'host-p', role: 'host', event: PRIV })));
      assertOk(await phost.request(body(PRIV, false)), 'event.create');
      assertOk(
        await phost.request({ type: 'team.register', event: PRIV, bib: '1', name: 'Hidden', category: 'open' }),
        'team.register',
      );
      assertError(await host.request(body('someone-elses', true)), 'forbidden', 'event');
    });
    const lap = (id) => ({
      type: 'lap.record',
      event: EV,
      laps: [{ client_id: id, bib: '7', at: iso(start + 10 * MIN) }],
    });

    it('a member token cannot record laps or read results', async () => {
      const m = keep(await signIn(srv, mintToken(SECRET, { sub: 'amy', role: 'member' })));
      assertError(await m.request(lap('mem-1')), 'forbidden');
      assertError(await m.request({ type: 'event.results', event: EV }), 'forbidden');
      assertError(await m.request({ type: 'marshal.token', event: EV, marshal: 'amy' }), 'forbidden');
    });

    it("a marshal of another event cannot record here; this event's marshal can only record", async () => {
      const ph = keep(await signIn(srv, mintToken(SECRET, { sub: 'host-p2', role: 'host', event: PRIV })));
      const other = assertOk(
        await ph.request({ type: 'marshal.token', event: PRIV, marshal: 'gate' }),
        'marshal.token',
      );
      const om = keep(await signIn(srv, other.token, 'other-gate'));
      assertError(await om.request(lap('other-1')), 'forbidden');
      const own = assertOk(await host.request({ type: 'marshal.token', event: EV, marshal: 'gate' }), 'marshal.token');
      const m = keep(await signIn(srv, own.token, 'own-gate'));
      assert.equal(assertOk(await m.request(lap('own-1')), 'lap.record').results[0].status, 'counted');
      assertError(await m.request({ type: 'lap.void', event: EV, client_id: 'own-1', reason: 'mine' }), 'forbidden');
      assertError(await m.request({ type: 'event.results', event: EV }), 'forbidden');
      assertError(await m.request({ type: 'marshal.token', event: EV, marshal: 'gate2' }), 'forbidden');
      assertError(
        await m.request({ type: 'team.register', event: EV, bib: '8', name: 'Eight', category: 'open' }),
        'forbidden',
      );
      // A host of one event is not a host of another.
      assertError(await host.request({ type: 'event.results', event: PRIV }), 'forbidden');
      assertError(await host.request({ type: 'lap.record', event: PRIV, laps: [] }), 'forbidden');
    });

    it("a private event's boards are refused to spectators (and other events' hosts), shown to its host", async () => {
      const spec = keep(await connect(srv.url));
      assertError(await spec.request({ type: 'leaderboard.get', board: `event:${PRIV}:all` }), 'forbidden', 'board');
      assertError(
        await spec.request({ type: 'leaderboard.subscribe', board: `event:${PRIV}:cat:open` }),
        'forbidden',
        'board',
      );
      assertOk(await spec.request({ type: 'leaderboard.get', board: `event:${EV}:all` }), 'leaderboard.get');
      assertError(await host.request({ type: 'leaderboard.get', board: `event:${PRIV}:all` }), 'forbidden', 'board');
      const ph = keep(await signIn(srv, mintToken(SECRET, { sub: 'host-p3', role: 'host', event: PRIV })));
      const r = assertOk(await ph.request({ type: 'leaderboard.get', board: `event:${PRIV}:all` }), 'leaderboard.get');
      assert.deepEqual(
        r.entries.map((e) => e.bib),
        ['1'],
      );
    });
  });

  describe('team.import under a small max_batch (5)', () => {
    let small, host;
    before(async () => {
      small = await startServer({ secret: SECRET, env: { FITSYNC_MAX_BATCH: '5' } });
      host = keep(await signIn(small, mintToken(SECRET, { sub: 'host-s', role: 'host', event: 'small-e2e' })));
      assertOk(
        await host.request({
          type: 'event.create',
          event: 'small-e2e',
          name: 'Small',
          kind: 'timed_relay',
          starts_at: iso(Date.now()),
          duration_s: 3600,
          lap_m: 400,
          categories: [{ id: 'open', name: 'Open', group: 'charity' }],
        }),
        'event.create',
      );
    });
    after(async () => {
      if (small) await small.stop();
    });

    it('max_batch rows are accepted after a header line, as max_batch crossings are in lap.record', async () => {
      const csv = 'bib,name,category\n1,A,open\n2,B,open\n3,C,open\n4,D,open\n5,E,open\n';
      const r = assertOk(await host.request({ type: 'team.import', event: 'small-e2e', csv }), 'team.import');
      assert.equal(r.accepted, 5, JSON.stringify(r.results));
      const laps = Array.from({ length: 5 }, (_, i) => ({
        client_id: `s${i}`,
        bib: '1',
        at: iso(Date.now() - i * MIN),
      }));
      assertOk(await host.request({ type: 'lap.record', event: 'small-e2e', laps }), 'lap.record');
    });

    it('a refused row is named by its line in the text, blank lines counted', async () => {
      const csv = 'bib,name,category\n\n6,F,open\n\n7,G,no-such-category\n';
      const r = assertOk(await host.request({ type: 'team.import', event: 'small-e2e', csv }), 'team.import');
      const bad = r.results.find((x) => x.status === 'error');
      assert.equal(bad.line, 5, JSON.stringify(r.results));
      assert.equal(bad.field, 'csv[5]');
    });
  });

  describe('tools/relay-sim.mjs (the rehearsal command)', () => {
    it('plays a short event from the dog-run file and writes the dump and the CSV', async () => {
      const dir = tempDir('relay-sim-');
      try {
        const args = [
          path.join(SOURCE_DIR, 'tools/relay-sim.mjs'),
          '--url',
          srv.url,
          '--event-file',
          DOG_FILE,
          '--unique',
          '--teams',
          '24',
          '--duration-s',
          '1800',
          '--speed',
          '900',
          '--offline-marshal-minutes',
          '5',
          '--dump',
          path.join(dir, 'dump.json'),
          '--csv',
          path.join(dir, 'results.csv'),
          '--quiet',
        ];
        const env = { ...process.env, FITSYNC_TOKEN_SECRET: SECRET };
        const out = await new Promise((resolve, reject) =>
          execFile(process.execPath, args, { env, timeout: 60000 }, (e, stdout, stderr) =>
            e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout),
          ),
        );
        assert.match(out, /Small dogs/);
        assert.match(out, /summary/);
        const d = JSON.parse(fs.readFileSync(path.join(dir, 'dump.json'), 'utf8'));
        assert.match(d.event.id, /^dog-run-2026-sim-/);
        assert.equal(d.teams.length, 24);
        const ref = referenceOf({
          start: d.event.start_ms,
          durationS: d.event.duration_s,
          minLapS: d.event.min_lap_s,
          teams: d.teams,
          crossings: d.crossings.filter((c) => !c.error),
          corrections: d.corrections,
          awards: d.awards,
        });
        assertRows(
          serverRows(d.results.overall),
          expectedRows(ref.ranked, { start: d.event.start_ms, lapM: d.event.lap_m }),
          'dog run overall',
        );
        const csv = parseCsv(fs.readFileSync(path.join(dir, 'results.csv'), 'utf8'));
        assert.equal(csv.length, 1 + 24);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

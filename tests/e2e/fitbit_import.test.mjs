// fitbit_import.test.mjs: the real Fitbit export (../shared/data, see its
// README) imported by build/fitsync-import into a real fitsyncd with its
// embedded redis-server, and every user-week of the report checked against
// figures computed here, independently of the C and Lua code, straight from
// the CSV: per user and ISO week, moderate = sum(FairlyActiveMinutes),
// vigorous = sum(VeryActiveMinutes), equivalent = moderate + 2 * vigorous,
// met = equivalent >= 150 (no user has a profile, so all are scored as
// adults, whose target is 150 equivalent minutes).
//
// The data is from 2016, so the server runs with FITSYNC_MAX_AGE_WEEKS=0
// (no acceptance window). A second import must change nothing: same report,
// every row a duplicate. Last, SIGTERM must stop the server cleanly.
//
// The CSV is not in the repository. Missing, it fails the test under CI
// (CI=true) and skips it elsewhere.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SHARED_DATA=../shared/data \
//      node --test tests/e2e/fitbit_import.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const BUILD = path.resolve(process.env.FITSYNC_BUILD_DIR ?? path.join(here, '../../build'));
const SHARED = path.resolve(process.env.FITSYNC_SHARED_DATA ?? path.join(here, '../../../shared/data'));
const CSV = path.join(SHARED, 'fitbit', 'dailyActivity_2016-04-12_2016-05-12.csv');
const FITSYNCD = path.join(BUILD, 'fitsyncd');
const IMPORT = path.join(BUILD, 'fitsync-import');

const HEADER = 'user,week,moderate_min,vigorous_min,equiv_min,target_min,aerobic_met';
const ADULT_TARGET = 150;
const HEALTH_WAIT_MS = 15000;
const IMPORT_TIMEOUT_MS = 60000;
const STOP_WAIT_MS = 5000;

/* ------------------------------------------------------------------ */
/* the expectation, from the CSV alone                                 */

const DAY = 86400000;
const pad2 = (n) => String(n).padStart(2, '0');

/* "4/12/2016" or "04/12/2016" -> UTC ms of that civil date. */
function usDateMs(s) {
  const m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(s);
  assert.ok(m, `ActivityDate ${JSON.stringify(s)} is not M/D/YYYY`);
  return Date.UTC(Number(m[3]), Number(m[1]) - 1, Number(m[2]));
}

/* ISO 8601 week name of a civil date: a week belongs to the year of its Thursday. */
function isoWeek(ms) {
  const weekday = ((new Date(ms).getUTCDay() + 6) % 7) + 1; // 1 = Monday .. 7 = Sunday
  const thursday = ms + (4 - weekday) * DAY;
  const year = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY));
  return `${year}-W${pad2(week)}`;
}

/* The report the import must write, as lines (header first), sorted by user then week. */
function expectedReport(csvText) {
  const lines = csvText.split(/\r?\n/).filter((l) => l.trim() !== '');
  const header = lines[0].split(',');
  const col = (name) => {
    const i = header.indexOf(name);
    assert.ok(i >= 0, `the CSV has no column ${name}`);
    return i;
  };
  const ID = col('Id'), DATE = col('ActivityDate');
  const FAIR = col('FairlyActiveMinutes'), VERY = col('VeryActiveMinutes');
  const weeks = new Map(); // "user\tweek" -> {moderate, vigorous}
  for (const line of lines.slice(1)) {
    const f = line.split(',');
    assert.equal(f.length, header.length, `malformed CSV line: ${line}`);
    const key = `fitbit-${f[ID]}\t${isoWeek(usDateMs(f[DATE]))}`;
    const w = weeks.get(key) ?? { moderate: 0, vigorous: 0 };
    w.moderate += Number(f[FAIR]);
    w.vigorous += Number(f[VERY]);
    weeks.set(key, w);
  }
  const rows = [...weeks.entries()].map(([key, w]) => {
    const [user, week] = key.split('\t');
    const equiv = w.moderate + 2 * w.vigorous;
    return { user, week, line: [user, week, w.moderate, w.vigorous, equiv, ADULT_TARGET, equiv >= ADULT_TARGET ? 1 : 0].join(',') };
  });
  rows.sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : a.week < b.week ? -1 : a.week > b.week ? 1 : 0));
  return { lines: [HEADER, ...rows.map((r) => r.line)], rows, dataRows: lines.length - 1 };
}

/* ------------------------------------------------------------------ */
/* processes                                                           */

/* A free TCP port: bind port 0, read it, close (a small race, acceptable in tests). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function healthz(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Starts fitsyncd on a free port in dir; resolves once /healthz answers 200. */
async function startServer(dir) {
  const port = await freePort();
  const proc = spawn(FITSYNCD, ['--port', String(port), '--data-dir', path.join(dir, 'data')], {
    env: { ...process.env, FITSYNC_MAX_AGE_WEEKS: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = { port, proc, log: '', exit: null };
  proc.stdout.on('data', (d) => (server.log += d));
  proc.stderr.on('data', (d) => (server.log += d));
  server.exited = new Promise((resolve) =>
    proc.on('exit', (code, signal) => resolve((server.exit = { code, signal }))));
  const deadline = Date.now() + HEALTH_WAIT_MS;
  for (;;) {
    if (server.exit) assert.fail(`fitsyncd exited during start-up (${JSON.stringify(server.exit)}):\n${server.log}`);
    if ((await healthz(port)) === 200) return server;
    if (Date.now() > deadline) assert.fail(`fitsyncd did not answer /healthz 200 within ${HEALTH_WAIT_MS} ms:\n${server.log}`);
    await sleep(100);
  }
}

/* Runs fitsync-import; resolves {code, stdout, stderr, summary}. */
function runImport(server, dir, report) {
  const args = ['--csv', CSV, '--url', `ws://127.0.0.1:${server.port}`, '--data-dir', path.join(dir, 'data'), '--report', report, '--concurrency', '8'];
  return new Promise((resolve) => {
    execFile(IMPORT, args, { timeout: IMPORT_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (err.code ?? err.signal) : 0;
      const m = /users=(\d+) rows=(\d+) accepted=(\d+) \(applied=(\d+) duplicate=(\d+) stale=(\d+)\) rejected=(\d+).* weeks=(\d+) seconds=([\d.]+) rows\/s=(\d+)/.exec(stderr);
      const summary = m && {
        users: +m[1], rows: +m[2], accepted: +m[3], applied: +m[4], duplicate: +m[5],
        stale: +m[6], rejected: +m[7], weeks: +m[8], seconds: +m[9], rowsPerSecond: +m[10],
      };
      resolve({ code, stdout, stderr, summary, args });
    });
  });
}

function readReport(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
}

/* ------------------------------------------------------------------ */
/* the test                                                            */

const haveCsv = fs.existsSync(CSV);

if (!haveCsv && process.env.CI === 'true') {
  it('Fitbit import (real data)', () => {
    assert.fail(`${CSV} is missing; under CI the real-data test must not be skipped (see ../shared/data/README.md)`);
  });
} else if (!haveCsv) {
  it('Fitbit import (real data)', { skip: `${CSV} is missing` }, () => {});
} else {
  describe('Fitbit import (real data)', { timeout: 120000 }, () => {
    let dir, server, expected;

    before(async () => {
      for (const bin of [FITSYNCD, IMPORT])
        assert.ok(fs.existsSync(bin), `${bin} is missing: build first (cmake --build build)`);
      expected = expectedReport(fs.readFileSync(CSV, 'utf8'));
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fitsync-fitbit-'));
      server = await startServer(dir);
    });

    after(async () => {
      if (server && !server.exit) {
        server.proc.kill('SIGKILL');
        await server.exited;
      }
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('the expectation covers the data README describes', () => {
      const users = new Set(expected.rows.map((r) => r.user));
      const weeks = [...new Set(expected.rows.map((r) => r.week))].sort();
      assert.equal(expected.dataRows, 940);
      assert.equal(users.size, 33);
      assert.deepEqual(weeks, ['2016-W15', '2016-W16', '2016-W17', '2016-W18', '2016-W19']);
    });

    it('imports every row and reports every user-week as computed from the CSV', async () => {
      const report = path.join(dir, 'report.csv');
      const run = await runImport(server, dir, report);
      assert.equal(run.code, 0, `fitsync-import ${run.args.join(' ')} failed:\n${run.stderr}\nserver log:\n${server.log}`);
      assert.ok(run.summary, `no summary line in:\n${run.stderr}`);
      assert.equal(run.summary.users, 33);
      assert.equal(run.summary.rows, expected.dataRows);
      assert.equal(run.summary.accepted, expected.dataRows);
      assert.equal(run.summary.applied, expected.dataRows);
      assert.equal(run.summary.rejected, 0);
      assert.equal(run.summary.weeks, expected.rows.length);

      const got = readReport(report);
      assert.equal(got[0], HEADER, 'report header');
      // One row per (user, week) present in the CSV, no more, no fewer.
      const keys = got.slice(1).map((l) => l.split(',').slice(0, 2).join(','));
      assert.equal(new Set(keys).size, keys.length, 'a (user, week) appears twice');
      assert.deepEqual(new Set(keys), new Set(expected.rows.map((r) => `${r.user},${r.week}`)));
      // Sorted by user then week.
      const sorted = [...keys].sort((a, b) => {
        const [ua, wa] = a.split(','), [ub, wb] = b.split(',');
        return ua < ub ? -1 : ua > ub ? 1 : wa < wb ? -1 : wa > wb ? 1 : 0;
      });
      assert.deepEqual(keys, sorted, 'report rows are not sorted by user then week');
      // Every figure, row by row (a mismatch names the row).
      for (let i = 1; i < expected.lines.length; i++) assert.equal(got[i], expected.lines[i], `report line ${i + 1}`);
      assert.equal(got.length, expected.lines.length);
    });

    it('a second import changes nothing: same report, every row a duplicate', async () => {
      const first = path.join(dir, 'report.csv');
      const second = path.join(dir, 'report-again.csv');
      const run = await runImport(server, dir, second);
      assert.equal(run.code, 0, `second import failed:\n${run.stderr}`);
      assert.ok(run.summary, `no summary line in:\n${run.stderr}`);
      assert.equal(run.summary.accepted, expected.dataRows);
      assert.equal(run.summary.applied, 0, 'the second import applied rows again');
      assert.equal(run.summary.duplicate, expected.dataRows);
      assert.equal(run.summary.rejected, 0);
      assert.equal(fs.readFileSync(second, 'utf8'), fs.readFileSync(first, 'utf8'));
    });

    it('fitsyncd stops on SIGTERM with exit status 0', async () => {
      server.proc.kill('SIGTERM');
      let timer;
      const timeout = new Promise((r) => (timer = setTimeout(() => r('timeout'), STOP_WAIT_MS)));
      const result = await Promise.race([server.exited, timeout]);
      clearTimeout(timer);
      assert.notEqual(result, 'timeout', `fitsyncd did not exit within ${STOP_WAIT_MS} ms of SIGTERM:\n${server.log}`);
      assert.deepEqual(result, { code: 0, signal: null }, server.log);
    });
  });
}

// crash.test.mjs: acked data survives kill -9 of fitsyncd (issue 19), and one
// data directory never has two Redis processes.
//
// 1. Under load from 25 retrying clients (each an offline queue of sessions
//    with fixed client_ids, resent after every lost connection until
//    acknowledged), fitsyncd is killed with SIGKILL and restarted on the same
//    port and data directory, three times. After each restart exactly one
//    redis-server serves the directory. When every session is acknowledged:
//    each is in account.export exactly once, the change feed from "0-0" holds
//    one creation per session, every week equals an independent model of the
//    WHO day rule (dayModel in lib.mjs), and the staff figures (k = 1, so
//    nothing is suppressed) equal the sum of the members' weeks. After a
//    graceful stop no redis-server is left on the directory.
// 2. A second fitsyncd on a directory in use refuses to start, naming the
//    pid that holds it, and changes nothing.
// 3. A redis-server left on the directory (found by its pid file, or by its
//    working directory when there is none) is stopped before fitsyncd starts
//    its own, and the data it held is still there.
// 4. The embedded Redis's restart backoff doubles on quick deaths and returns
//    to its first step after the child has been healthy for 10 s.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/crash.test.mjs

import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer,
  connect,
  mintToken,
  freePort,
  tempDir,
  waitFor,
  sleep,
  withTimeout,
  FITSYNCD,
  SOURCE_DIR,
  MIN,
  rfc3339,
  at,
  addDays,
  isoWeek,
  dayModel,
  RetryingClient,
} from './lib.mjs';

const OFF = 8 * 60;
const ENV = {
  FITSYNC_RATE_MESSAGES_PER_S: '100000',
  FITSYNC_RATE_BURST: '100000',
  FITSYNC_MAX_AGE_WEEKS: '0',
  FITSYNC_STATS_K: '1',
};
const MONDAY = '2026-10-05'; // ISO 2026-W41; the sessions fill W41 and W42
const LEVEL = { light: 1, moderate: 2, vigorous: 3 };
const INTENSITIES = ['light', 'moderate', 'vigorous'];

/* Session i of member u: overlaps happen (the day rule must count them once). */
function plannedSession(u, i) {
  const date = addDays(MONDAY, (u * 3 + i) % 14);
  const startMin = 6 * 60 + ((u * 53 + i * 97) % (14 * 60));
  const min = 10 + ((u * 7 + i * 11) % 60);
  const intensity = INTENSITIES[(u + i) % 3];
  const start = at(date, 0, startMin, OFF);
  return {
    item: { client_id: `u${u}-s${i}`, type: 'running', start: rfc3339(start, OFF), duration_s: min * 60, intensity },
    model: { start, end: start + min * MIN, off: OFF, level: LEVEL[intensity] },
    week: isoWeek(date),
  };
}


/* redis-server processes whose working directory is dir (zombies skipped). */
function redisOn(dir) {
  const pids = [];
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
      if (!/\(redis-server\) [^ZX]/.test(stat)) continue;
      if (fs.readlinkSync(`/proc/${ent}/cwd`) === dir) pids.push(Number(ent));
    } catch {}
  }
  return pids;
}

/* Every page of the change feed from "0-0". */
async function pullAll(c) {
  const changes = [];
  let cursor = '0-0';
  for (;;) {
    const r = await c.request({ type: 'sync.pull', cursor, limit: 1000 });
    assert.equal(r.type, 'sync.pull', JSON.stringify(r));
    changes.push(...r.changes);
    cursor = r.cursor;
    if (!r.more) return changes;
  }
}

describe('kill -9 of fitsyncd loses no acked data', { timeout: 240000 }, () => {
  const dataDir = tempDir('fitsync-crash-');
  const secret = 'crash-test-secret';
  let srv;
  after(async () => {
    if (srv) await srv.stop();
    for (const pid of redisOn(dataDir)) process.kill(pid, 'SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged session exactly once across three kills', async () => {
    const port = await freePort();
    const start = () => startServer({ port, dataDir, secret, keepDataDir: true, env: ENV });
    srv = await start();
    const MEMBERS = 25;
    const PER = 60;
    const plans = [];
    const clients = [];
    for (let u = 0; u < MEMBERS; u++) {
      plans.push(Array.from({ length: PER }, (_, i) => plannedSession(u, i)));
      clients.push(new RetryingClient(srv.url, mintToken(secret, { sub: `m${u}` }), plans[u]));
    }
    const runs = clients.map((c) => c.run());
    const ackedCount = () => clients.reduce((n, c) => n + c.acked.size, 0);

    const kills = [];
    for (let k = 0; k < 3; k++) {
      const before = ackedCount();
      await waitFor(() => ackedCount() >= before + 150 || clients.every((c) => c.done), {
        timeout: 30000,
        what: 'uploads acknowledged before the kill',
      });
      const redisBefore = redisOn(dataDir);
      assert.equal(redisBefore.length, 1, `one redis-server on the directory before kill ${k + 1}`);
      srv.proc.kill('SIGKILL');
      await withTimeout(srv.exited, 5000, 'fitsyncd to die');
      const t0 = Date.now();
      srv = await start();
      kills.push({ acked: ackedCount(), restartMs: Date.now() - t0 });
      const now = redisOn(dataDir);
      assert.equal(now.length, 1, `exactly one redis-server on the directory after restart ${k + 1}: ${now}`);
      assert.ok(!now.includes(redisBefore[0]), 'the killed fitsyncd\'s Redis did not survive it');
      const log = srv.stderr;
      assert.doesNotMatch(log, /refusing Redis/, 'the new fitsyncd found no stranger on its socket');
    }
    await withTimeout(Promise.all(runs), 120000, 'every session to be acknowledged');
    assert.ok(clients.every((c) => c.done));
    const reconnects = clients.reduce((n, c) => n + c.reconnects, 0);
    assert.ok(reconnects >= MEMBERS, `the clients lost their connections at the kills (${reconnects})`);
    console.log(`crash test: kills ${JSON.stringify(kills)}, reconnects ${reconnects}, ` +
      `duplicates answered ${clients.reduce((n, c) => n + c.resent, 0)}`);

    // Every member's data, read back over the protocol.
    const staff = await srv.login('staff-1', 'desk', { role: 'staff' });
    const weekTotals = new Map(); // week -> {mo, vi, eq, n}
    for (let u = 0; u < MEMBERS; u++) {
      const c = await srv.login(`m${u}`, 'laptop');
      const ex = await c.request({ type: 'account.export' }, 15000);
      assert.equal(ex.type, 'account.export', JSON.stringify(ex).slice(0, 300));
      const ids = ex.export.activities.map((a) => a.client_id).sort();
      const want = plans[u].map((p) => p.item.client_id).sort();
      assert.deepEqual(ids, want, `m${u}: every acknowledged session exactly once, nothing else`);
      for (const a of ex.export.activities) assert.equal(a.rev, 1, `m${u} ${a.client_id}: rev 1 (created once)`);

      const changes = await pullAll(c);
      const created = changes.filter((ch) => ch.kind === 'activity' && ch.op === 'upsert').map((ch) => ch.id).sort();
      assert.deepEqual(created, want, `m${u}: one creation per session in the change feed`);

      const days = dayModel(plans[u].map((p) => p.model));
      const weeks = new Map();
      for (const [date, d] of days) {
        const w = weeks.get(isoWeek(date)) || { mo: 0, vi: 0 };
        w.mo += d.mo;
        w.vi += d.vi;
        weeks.set(isoWeek(date), w);
      }
      for (const [week, w] of weeks) {
        const r = await c.request({ type: 'week.get', week });
        assert.equal(r.week.moderate_min, w.mo, `m${u} ${week}: moderate minutes`);
        assert.equal(r.week.vigorous_min, w.vi, `m${u} ${week}: vigorous minutes`);
        assert.equal(r.week.equivalent_min, w.mo + 2 * w.vi, `m${u} ${week}: equivalent minutes`);
        const t = weekTotals.get(week) || { mo: 0, vi: 0, eq: 0, n: 0 };
        t.mo += r.week.moderate_min;
        t.vi += r.week.vigorous_min;
        t.eq += r.week.equivalent_min;
        t.n += plans[u].filter((p) => p.week === week).length;
        weekTotals.set(week, t);
      }
      c.close();
    }
    for (const [week, t] of weekTotals) {
      const r = await staff.request({ type: 'stats.get', week });
      const all = r.stats.week_figures.all;
      assert.equal(all.equivalent_min, t.eq, `${week}: staff equivalent minutes = the sum of the members' weeks`);
      assert.equal(all.moderate_min, t.mo, `${week}: staff moderate minutes`);
      assert.equal(all.vigorous_min, t.vi, `${week}: staff vigorous minutes`);
      assert.equal(all.activities, t.n, `${week}: staff sessions`);
    }
    const st = await staff.request({ type: 'stats.get', week: isoWeek(MONDAY) });
    assert.equal(st.stats.totals.activities, MEMBERS * PER, 'programme total of sessions');
    staff.close();

    await srv.stop();
    srv = null;
    assert.deepEqual(redisOn(dataDir), [], 'no redis-server left on the directory after a graceful stop');
    assert.ok(!fs.existsSync(path.join(dataDir, 'redis.pid')), 'the pid file is removed at a graceful stop');
  });
});

describe('one fitsyncd and one Redis per data directory', { timeout: 120000 }, () => {
  const servers = [];
  const dirs = [];
  after(async () => {
    for (const s of servers) await s.stop();
    for (const d of dirs) {
      for (const pid of redisOn(d)) process.kill(pid, 'SIGKILL');
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it('exits 1 with a clear error when its port is in use, and starts no Redis', async () => {
    const srv = await startServer({ env: ENV });
    servers.push(srv);
    const dir = tempDir('fitsync-port-');
    dirs.push(dir);
    const r = spawnSync(FITSYNCD, ['--port', String(srv.port), '--data-dir', dir], {
      env: { ...process.env, FITSYNC_TOKEN_SECRET: 'x' },
      encoding: 'utf8',
      timeout: 10000,
    });
    assert.equal(r.status, 1, `exit status 1, not a crash (signal ${r.signal}): ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot listen on 0\\.0\\.0\\.0:${srv.port}: Address already in use`));
    assert.deepEqual(redisOn(dir), [], 'no redis-server was started for it');
  });

  it('stops cleanly on Ctrl-C: the terminal\'s SIGINT reaches fitsyncd, which stops its Redis', async () => {
    const dir = tempDir('fitsync-ctrlc-');
    dirs.push(dir);
    const port = await freePort();
    // A process group of its own, as a shell gives a foreground job; Ctrl-C signals the group.
    const p = spawn(FITSYNCD, ['--port', String(port), '--data-dir', dir], {
      env: { ...process.env, ...ENV, FITSYNC_TOKEN_SECRET: 'x' },
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const exited = new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal })));
    await waitFor(() => /Redis ready/.test(err) && redisOn(dir).length === 1, { what: 'fitsyncd and its Redis up' });
    process.kill(-p.pid, 'SIGINT');
    const r = await withTimeout(exited, 15000, 'fitsyncd to exit after Ctrl-C');
    assert.equal(r.code, 0, err);
    assert.doesNotMatch(err, /You insist/, 'Redis was not interrupted itself');
    assert.match(err, /ready to exit/, 'Redis shut down cleanly (SIGTERM from fitsyncd)');
    assert.deepEqual(redisOn(dir), [], 'no redis-server left');
    assert.ok(!fs.existsSync(path.join(dir, 'redis.sock')), 'its socket removed');
  });

  it('refuses a second fitsyncd on a directory in use, naming the holder', async () => {
    const srv = await startServer({ env: ENV });
    servers.push(srv);
    const r = spawnSync(FITSYNCD, ['--port', String(await freePort()), '--data-dir', srv.dataDir], {
      env: { ...process.env, FITSYNC_TOKEN_SECRET: 'x' },
      encoding: 'utf8',
      timeout: 10000,
    });
    assert.notEqual(r.status, 0, 'the second fitsyncd exits non-zero');
    assert.match(r.stderr, new RegExp(`data_dir .* is in use by another fitsyncd \\(pid ${srv.proc.pid}\\)`));
    assert.equal(redisOn(srv.dataDir).length, 1, 'still one redis-server on the directory');
    assert.equal((await srv.health()).status, 200, 'the first one still serves');
  });

  for (const how of ['pid file', 'working directory']) {
    it(`stops a redis-server left on the directory (found by its ${how}) before starting its own`, async () => {
      const dataDir = tempDir('fitsync-orphan-');
      dirs.push(dataDir);
      const port = await freePort();
      let srv = await startServer({ port, dataDir, keepDataDir: true, env: ENV });
      const c = await srv.login('alice');
      const s = plannedSession(1, 1);
      const up = await c.request({ type: 'activity.upload', activities: [s.item] });
      assert.equal(up.results[0].status, 'created');
      c.close();
      await srv.stop();
      // A Redis on the directory that no fitsyncd started (as a crash could leave one).
      const orphan = spawn(
        'redis-server',
        [path.join(SOURCE_DIR, 'config/redis.conf'), '--unixsocket', path.join(dataDir, 'redis.sock'),
          '--port', '0', '--dir', dataDir, '--daemonize', 'no'],
        { cwd: dataDir, stdio: 'ignore', detached: true }
      );
      await waitFor(() => fs.existsSync(path.join(dataDir, 'redis.sock')), { what: 'the orphan Redis socket' });
      if (how === 'pid file') fs.writeFileSync(path.join(dataDir, 'redis.pid'), `${orphan.pid}\n`);
      else {
        // No pid file and no socket: only its working directory gives it away.
        fs.rmSync(path.join(dataDir, 'redis.pid'), { force: true });
        fs.rmSync(path.join(dataDir, 'redis.sock'), { force: true });
      }
      srv = await startServer({ port, dataDir, keepDataDir: true, env: ENV, secret: srv.secret });
      servers.push(srv);
      assert.match(srv.stderr, new RegExp(`redis-server pid ${orphan.pid} was left running on`));
      const pids = redisOn(dataDir);
      assert.equal(pids.length, 1, 'one redis-server on the directory');
      assert.notEqual(pids[0], orphan.pid, 'the orphan is gone');
      assert.equal(fs.readFileSync(path.join(dataDir, 'redis.pid'), 'utf8').trim(), String(pids[0]));
      const c2 = await srv.login('alice');
      const ex = await c2.request({ type: 'account.export' });
      assert.deepEqual(ex.export.activities.map((a) => a.client_id), [s.item.client_id], 'the data is still there');
      c2.close();
    });
  }
});

describe('the embedded Redis restart backoff recovers', { timeout: 120000 }, () => {
  let srv;
  after(async () => srv && (await srv.stop()));

  it('doubles on quick deaths and resets after 10 s of health', async () => {
    srv = await startServer({ env: ENV });
    const restartsLogged = () => [...srv.stderr.matchAll(/redis-server exited .* restarting in (\d+) ms/g)].map((m) => Number(m[1]));
    const killRedis = async () => {
      const [pid] = srv.redisPids();
      const n = restartsLogged().length;
      process.kill(pid, 'SIGKILL');
      await waitFor(() => restartsLogged().length > n, { what: 'the restart to be logged' });
      await srv.waitHealthy(15000);
    };
    await sleep(10500); // healthy for longer than FIT_REDIS_HEALTHY_MS
    await killRedis(); // first step
    await killRedis(); // quick death: doubled
    assert.deepEqual(restartsLogged(), [200, 400]);
    await sleep(10500);
    await killRedis(); // healthy for 10 s: back to the first step
    assert.deepEqual(restartsLogged(), [200, 400, 200]);
    const m = await fetch(`http://127.0.0.1:${srv.port}/metrics`).then((r) => r.text());
    assert.match(m, /^fitsync_redis_child_restarts_total 3$/m);
  });
});

// config.test.mjs: settings and logging of fitsyncd (README.md, "Configuration").
//
//  - a FITSYNC_* environment variable that names no setting stops start-up
//    (exit 2) with a message naming it, and the nearest setting when one is
//    close; nothing is created in the data directory;
//  - the variables the test harness itself uses are not settings and are let be;
//  - --check-config prints every key with its effective value and where it
//    came from (default, file, environment, flag), exits 0, and exits 2 with
//    the error on a bad configuration;
//  - log_level drives fitsyncd's own lines and the libwebsockets log: debug
//    shows lws debug lines, info one line per HTTP answer, notice the
//    server's life, error nothing at all in a healthy run.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/config.test.mjs

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FITSYNCD, SOURCE_DIR, freePort, tempDir, startServer, httpGet, sleep } from './lib.mjs';

/* The environment without any FITSYNC_* setting of the caller's (the harness's own stay). */
function baseEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FITSYNC_')) env[k] = v;
  for (const k of ['FITSYNC_BUILD_DIR', 'FITSYNC_SOURCE_DIR']) if (process.env[k]) env[k] = process.env[k];
  return { ...env, ...extra };
}

/* Runs fitsyncd to its exit (it must exit by itself within 10 s): {code, stdout, stderr}. */
function run(args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(FITSYNCD, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`fitsyncd ${args.join(' ')} did not exit within 10 s:\n${stderr}`));
    }, 10000);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/* The keys of a config file, flattened to "a.b". */
function keysOf(obj, prefix = '') {
  return Object.entries(obj).flatMap(([k, v]) =>
    v && typeof v === 'object' ? keysOf(v, `${prefix}${k}.`) : [`${prefix}${k}`]
  );
}

/* --check-config output -> Map key -> {value, from}. */
function parseCheck(stdout) {
  const lines = stdout.trim().split('\n');
  assert.match(lines[0], /^fitsyncd: the configuration is valid \(config file .+\)$/);
  assert.match(lines[1], /^key\s+value\s+from$/);
  const m = new Map();
  for (const line of lines.slice(2)) {
    const r = /^(\S+)\s+("(?:[^"]*)"|\(.*?\)|-?\d+)\s+(.+)$/.exec(line);
    assert.ok(r, `unparsable --check-config line: ${JSON.stringify(line)}`);
    m.set(r[1], { value: r[2], from: r[3] });
  }
  return m;
}

describe('settings', () => {
  it('a FITSYNC_* variable that names no setting stops start-up, naming it and the nearest setting', async () => {
    const cases = [
      ['FITSYNC_REDIS_ADRESS', 'FITSYNC_REDIS_ADDRESS', 'redis.address'],
      ['FITSYNC_PROT', 'FITSYNC_PORT', 'port'],
      ['FITSYNC_MAX_BODY_BYTES', 'FITSYNC_HTTP_MAX_BODY_BYTES', 'http.max_body_bytes'],
      ['FITSYNC_RATE_BRUST', 'FITSYNC_RATE_BURST', 'rate.burst'],
      ['FITSYNC_LOG_FORMAT', null, null],
      ['FITSYNC_REDIS_CLUSTR', 'FITSYNC_REDIS_CLUSTER', 'redis.cluster'],
      ['FITSYNC_', null, null],
    ];
    for (const [name, near, key] of cases) {
      const dir = tempDir('fitsync-cfg-');
      const port = await freePort();
      const r = await run(['--port', String(port), '--data-dir', path.join(dir, 'data')], baseEnv({ [name]: 'json' }));
      assert.equal(r.code, 2, `${name}: exit status (stderr: ${r.stderr})`);
      assert.match(r.stderr, new RegExp(`configuration error: environment variable ${name} names no setting`), name);
      if (near) assert.ok(r.stderr.includes(`did you mean ${near} (key "${key}")?`), `${name}: ${r.stderr}`);
      else assert.doesNotMatch(r.stderr, /did you mean/, name);
      assert.deepEqual(fs.readdirSync(dir), [], `${name}: start-up stopped, yet something was created`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the test harness's own FITSYNC_* variables are not settings and are let be", async () => {
    const env = baseEnv({
      FITSYNC_BUILD_DIR: '/x',
      FITSYNC_SOURCE_DIR: '/y',
      FITSYNC_SHARED_DATA: '/z',
      FITSYNC_CHROMIUM: '/usr/bin/chromium',
      FITSYNC_MODEL_SEED: '1',
      FITSYNC_MODEL_OPS: '10',
      FITSYNC_MODEL_FULL_UPDATES: '1',
    });
    const r = await run(['--check-config'], env);
    assert.equal(r.code, 0, r.stderr);
  });

  it('--check-config prints each value and where it came from: default, file, environment, flag', async () => {
    const dir = tempDir('fitsync-cfg-');
    const conf = JSON.parse(fs.readFileSync(path.join(SOURCE_DIR, 'config/fitsync.json'), 'utf8'));
    const cfgDir = path.join(SOURCE_DIR, 'config');
    conf.max_batch = 77;
    delete conf.rate; // rate.* from the defaults
    conf.redis.conf = path.join(cfgDir, 'redis.conf');
    for (const k of ['districts', 'age_bands', 'who_targets', 'met_table']) conf[k] = path.join(cfgDir, conf[k]);
    const file = path.join(dir, 'fitsync.json');
    fs.writeFileSync(file, JSON.stringify(conf, null, 2));
    const secret = 'a-secret-of-27-characters!!';
    const env = baseEnv({ FITSYNC_SHARDS: '3', FITSYNC_PORT: '1111', FITSYNC_TOKEN_SECRET: secret });
    const r = await run(['--config', file, '--check-config', '--port', '2222', '--data-dir', '/srv/fitsync'], env);
    assert.equal(r.code, 0, r.stderr);
    const m = parseCheck(r.stdout);
    const want = {
      max_batch: ['77', `file ${file}`],
      'rate.burst': ['60', 'default'],
      'rate.messages_per_s': ['20', 'default'],
      shards: ['3', 'environment FITSYNC_SHARDS'],
      port: ['2222', 'flag --port'], // the flag wins over FITSYNC_PORT
      data_dir: ['"/srv/fitsync"', 'flag --data-dir'],
      'token.secret': [`(${secret.length} characters, not shown)`, 'environment FITSYNC_TOKEN_SECRET'],
      timezone: ['"+08:00"', `file ${file}`],
      'http.max_body_bytes': ['1048576', 'default'],
      log_level: ['"notice"', `file ${file}`],
    };
    for (const [k, [value, from]] of Object.entries(want))
      assert.deepEqual(m.get(k), { value, from }, `${k}: ${JSON.stringify(m.get(k))}`);
    assert.ok(!r.stdout.includes(secret), 'the token secret must not be printed');
    // Every key of the shipped config file, and nothing unknown, is listed.
    const shipped = keysOf(JSON.parse(fs.readFileSync(path.join(cfgDir, 'fitsync.json'), 'utf8')));
    for (const k of shipped) assert.ok(m.has(k), `--check-config does not list ${k}`);
    for (const [k, v] of m)
      assert.match(v.from, /^(default|file .+|environment FITSYNC_[A-Z0-9_]+|flag --[a-z-]+)$/, `${k}: from ${v.from}`);
    assert.deepEqual(fs.readdirSync(dir), ['fitsync.json'], '--check-config must not create anything');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('--check-config with a bad configuration prints the error naming the key and exits 2', async () => {
    const cases = [
      [{ FITSYNC_PORT: '0' }, /environment FITSYNC_PORT: port must be a whole number within 1\.\.65535 \(got "0"\)/],
      [{ FITSYNC_LOG_LEVEL: 'verbose' }, /log_level must be error, warn, notice, info or debug \(got "verbose"\)/],
      [{ FITSYNC_HTTP_MAX_BODY_BYTES: '-1' }, /http\.max_body_bytes must be a whole number within 0\.\.67108864/],
      [{ FITSYNC_MAX_BTCH: '5' }, /FITSYNC_MAX_BTCH names no setting; did you mean FITSYNC_MAX_BATCH/],
    ];
    for (const [extra, re] of cases) {
      const r = await run(['--check-config'], baseEnv(extra));
      assert.equal(r.code, 2, `${JSON.stringify(extra)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stdout, /configuration is valid/);
    }
  });
});

describe('log_level', () => {
  /* Starts a server at level, does two HTTP requests, stops it; returns its stderr lines. */
  async function linesAt(level) {
    const srv = await startServer({ env: { FITSYNC_LOG_LEVEL: level } });
    await httpGet(srv.port, '/healthz');
    await httpGet(srv.port, '/nope');
    await srv.stop();
    await sleep(200); // stderr may trail the exit event
    return srv.stderr.split('\n');
  }
  const has = (lines, re) => lines.some((l) => re.test(l));

  it('debug: libwebsockets debug lines, and everything info shows', async () => {
    const l = await linesAt('debug');
    assert.ok(has(l, /^fitsyncd: lws D: /), 'no lws debug line');
    assert.ok(has(l, /^fitsyncd: lws I: /), 'no lws info line');
    assert.ok(has(l, /^fitsyncd: http GET \/healthz 200$/));
    assert.ok(has(l, /^fitsyncd: Redis ready/));
  });

  it('info: one line per HTTP answer, no lws info or debug', async () => {
    const l = await linesAt('info');
    assert.ok(has(l, /^fitsyncd: http GET \/healthz 200$/), l.join('\n'));
    assert.ok(has(l, /^fitsyncd: http GET \/nope 404$/));
    assert.ok(!has(l, /^fitsyncd: lws [ID]: /), 'lws info/debug lines at info');
  });

  it("notice: the server's life and lws notices, no request lines", async () => {
    const l = await linesAt('notice');
    for (const re of [/^fitsyncd: version .* listening on ws:/, /^fitsyncd: Redis ready/, /^fitsyncd: SIGTERM received, stopping$/, /^fitsyncd: stopped$/, /^fitsyncd: lws N: /])
      assert.ok(has(l, re), `${re} missing at notice:\n${l.join('\n')}`);
    assert.ok(!has(l, /^fitsyncd: http /), 'request lines at notice');
    assert.ok(!has(l, /^fitsyncd: lws [ID]: /));
  });

  it('error: a healthy run writes no fitsyncd line at all', async () => {
    const l = await linesAt('error');
    const ours = l.filter((x) => x.startsWith('fitsyncd:'));
    assert.deepEqual(ours, [], 'fitsyncd lines at log_level error');
  });

  it('warn: a warning shows (no dashboard files), notices do not', async () => {
    const dir = tempDir('fitsync-cfg-');
    const srv = await startServer({ env: { FITSYNC_LOG_LEVEL: 'warn', FITSYNC_WEB_DIR: path.join(dir, 'no-such-web') } });
    const r = await httpGet(srv.port, '/dashboard/');
    await srv.stop();
    await sleep(200);
    const l = srv.stderr.split('\n');
    assert.equal(r.status, 404);
    assert.ok(has(l, /^fitsyncd: no web_dir at .*no-such-web: \/dashboard\/ is not served$/), l.join('\n'));
    assert.ok(!has(l, /^fitsyncd: (Redis ready|stopped|version )/), 'notice lines at warn');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

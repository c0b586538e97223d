// lib.mjs: shared helpers for the end-to-end tests of fitsyncd.
//
// Each test file starts its own fitsyncd (with its embedded redis-server) in
// a fresh temporary directory on a free port, talks to it over real
// WebSockets with the `ws` package, and stops it in an after() hook. Nothing
// here knows about particular test cases: it starts and stops servers, mints
// tokens independently of the C code (node's crypto HMAC), and wraps a
// WebSocket in a small client that sends requests with ids, awaits the reply
// carrying the same "re", and collects pushes (messages without "re").
//
// Every wait is bounded: each helper takes a timeout and rejects with a
// message that says what was being waited for.
//
// Environment: FITSYNC_BUILD_DIR (where fitsyncd and fitsync-token are) and
// FITSYNC_SOURCE_DIR (the repository; config/ is read from there).

import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));

export const SOURCE_DIR = process.env.FITSYNC_SOURCE_DIR || path.resolve(here, '../..');
export const BUILD_DIR = process.env.FITSYNC_BUILD_DIR || path.join(SOURCE_DIR, 'build');
export const FITSYNCD = path.join(BUILD_DIR, 'fitsyncd');
export const FITSYNC_TOKEN = path.join(BUILD_DIR, 'fitsync-token');
export const SUBPROTOCOL = 'fitsync.v1';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Resolves or rejects like p, or rejects after ms with "timed out: what". */
export function withTimeout(p, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/* Polls fn() (sync or async) until it returns a truthy value; returns that value. */
export async function waitFor(fn, { timeout = 10000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await sleep(interval);
  }
}

/* A TCP port that was free a moment ago (listen on 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/* A fresh directory under the OS temp dir, realpath'd (the server resolves it too). */
export function tempDir(prefix = 'fitsync-e2e-') {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

/* GET http://127.0.0.1:port/path -> {status, headers, body (parsed JSON if it is JSON), text}. */
export function httpGet(port, urlPath = '/healthz', timeout = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let body = text;
        try {
          body = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode, headers: res.headers, body, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: timed out`)));
    req.on('error', reject);
  });
}

/* ------------------------------------------------------------------ */
/* tokens                                                              */

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/*
 * Mints a compact JWS with node's HMAC, independently of protocol/fit_token.c.
 * claims: {sub, role='member', exp (UTC s) | ttl (s, default 3600), event?, ...extra}.
 * header defaults to {"alg":"HS256","typ":"JWT"}; pass another to test refusals
 * (with alg "none" the signature part is empty).
 */
export function mintToken(secret, claims, header = { alg: 'HS256', typ: 'JWT' }) {
  const { ttl = 3600, ...body } = claims; // claims keep the caller's key order
  if (body.role === undefined) body.role = 'member';
  if (body.exp === undefined) body.exp = Math.floor(Date.now() / 1000) + ttl;
  const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(body))}`;
  if (header.alg === 'none') return `${signing}.`;
  const mac = crypto.createHmac('sha256', secret).update(signing).digest();
  return `${signing}.${b64url(mac)}`;
}

/* Mints a token with build/fitsync-token (the C implementation). */
export function mintTokenWithTool({ sub, role = 'member', ttl = 3600, event, dataDir, secret }) {
  const args = ['--sub', sub, '--role', role, '--ttl', String(ttl)];
  if (event) args.push('--event', event);
  if (dataDir) args.push('--data-dir', dataDir);
  const env = { ...process.env };
  if (secret !== undefined) env.FITSYNC_TOKEN_SECRET = secret;
  else delete env.FITSYNC_TOKEN_SECRET;
  return execFileSync(FITSYNC_TOKEN, args, { env, encoding: 'utf8', timeout: 5000 }).trim();
}

/* Decodes the claims of a compact JWS without checking it (for assertions). */
export function tokenClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/* ------------------------------------------------------------------ */
/* the server                                                          */

/*
 * Starts fitsyncd on a free port in a fresh temporary data dir and waits for
 * GET /healthz to answer 200 (Redis ready, Functions loaded).
 * opts: {env: extra environment (e.g. FITSYNC_MAX_BATCH), secret: token
 * secret (sets FITSYNC_TOKEN_SECRET; default a random one; '' = none, so
 * fitsyncd creates DIR/token.secret and server.secret is read from it),
 * args: extra flags, dataDir, keepDataDir, readyTimeout (ms, default 15000)}.
 * Returns a Server; always call server.stop() (e.g. in after()).
 */
export async function startServer(opts = {}) {
  const port = opts.port || (await freePort());
  const dataDir = opts.dataDir || tempDir();
  let extra = opts.args || [];
  const i = extra.indexOf('--redis');
  const shared = opts.env?.FITSYNC_REDIS_ADDRESS || (i >= 0 ? extra[i + 1] : '');
  if (CLUSTER_DIR) extra = extra.filter((a, k) => a !== '--redis' && extra[k - 1] !== '--redis');
  const env = { ...clusterEnv(shared), ...process.env, ...(opts.env || {}) };
  delete env.FITSYNC_E2E_CLUSTER_DIR; // the harness's, not a setting: fitsyncd would refuse it
  if (CLUSTER_DIR) delete env.FITSYNC_REDIS_ADDRESS; // "share another server's Redis": the cluster
  let secret = opts.secret === undefined ? crypto.randomBytes(24).toString('hex') : opts.secret;
  if (secret) env.FITSYNC_TOKEN_SECRET = secret;
  else delete env.FITSYNC_TOKEN_SECRET; // fitsyncd creates DIR/token.secret
  const args = ['--port', String(port), '--data-dir', dataDir, ...extra];
  const proc = spawn(FITSYNCD, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const server = new Server(proc, port, dataDir, secret, opts.keepDataDir);
  live.add(server);
  try {
    await server.waitHealthy(opts.readyTimeout || 15000);
    if (!secret) server.secret = fs.readFileSync(path.join(dataDir, 'token.secret'), 'utf8').trim();
  } catch (e) {
    await server.stop();
    throw new Error(`${e.message}\nfitsyncd output:\n${server.output()}`);
  }
  return server;
}

/*
 * Redis Cluster mode (CTest label "cluster"): FITSYNC_E2E_CLUSTER_DIR names a
 * cluster started by tools/redis-cluster.sh. Every server of the test process
 * then runs against it (FITSYNC_REDIS_CLUSTER = its nodes, 16 logical shards
 * so that members spread over every primary), and each server starts from an
 * empty cluster (FLUSHALL on each primary; the test files of this label hold
 * the cluster one at a time) unless it was asked to share a Redis that an
 * earlier server of the process was given too (FITSYNC_REDIS_ADDRESS or
 * --redis with the same address): then it shares the cluster as it is.
 * Tests that need two separate Redis at once skip themselves (onlyOneRedis).
 */
export const CLUSTER_DIR = process.env.FITSYNC_E2E_CLUSTER_DIR || '';
export const clusterPorts = () =>
  CLUSTER_DIR ? fs.readFileSync(path.join(CLUSTER_DIR, 'ports'), 'utf8').split(/\s+/).filter(Boolean).map(Number) : [];

/* The logical shards servers run with (FITSYNC_SHARDS; 16 in cluster mode, else 1). */
export const SHARDS = Number(process.env.FITSYNC_SHARDS || (CLUSTER_DIR ? 16 : 1));

/* A member's logical shard, as workers/fit_store.c computes it: FNV-1a 32 of the id, mod shards. */
export function shardOf(id, shards = SHARDS) {
  let h = 2166136261;
  for (const b of Buffer.from(id, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return shards > 1 ? h % shards : 0;
}

/* A member's Redis key: fit:{sN}:u:<user>/<suffix>. */
export const userKey = (user, suffix) => `fit:{s${shardOf(user)}}:u:${user}/${suffix}`;

/* The primaries' ports now (they change with failovers). */
export function clusterPrimaries() {
  return clusterPorts().filter((p) => {
    try {
      const info = execFileSync('redis-cli', ['-p', String(p), 'info', 'replication'], {
        encoding: 'utf8',
        timeout: 5000,
        stdio: ['ignore', 'pipe', 'ignore'], // a node that is down says so on stderr
      });
      return /^role:master/m.test(info);
    } catch {
      return false;
    }
  });
}

/* node:test's skip option for a test that needs two separate Redis at once. */
export const onlyOneRedis = CLUSTER_DIR ? 'needs two separate Redis; one cluster is shared' : false;
/* node:test's skip option for a test of the embedded (or its own) redis-server itself. */
export const embeddedOnly = CLUSTER_DIR ? 'tests a single redis-server of its own' : false;

const sharedAddresses = new Set();
function clusterEnv(shared) {
  if (!CLUSTER_DIR) return {};
  const joining = shared && sharedAddresses.has(shared);
  if (shared) sharedAddresses.add(shared);
  if (!joining)
    for (const p of clusterPrimaries()) execFileSync('redis-cli', ['-p', String(p), 'flushall'], { timeout: 10000 });
  return { FITSYNC_REDIS_CLUSTER: clusterPorts().map((p) => `127.0.0.1:${p}`).join(','), FITSYNC_SHARDS: String(SHARDS) };
}

/* Servers not yet stopped: killed (synchronously) if the test process exits without stopping them. */
const live = new Set();
process.on('exit', () => {
  for (const s of live) s.kill();
});

export class Server {
  constructor(proc, port, dataDir, secret, keepDataDir) {
    this.proc = proc;
    this.port = port;
    this.dataDir = dataDir;
    this.secret = secret;
    this.url = `ws://127.0.0.1:${port}/`;
    this.keepDataDir = !!keepDataDir;
    this.stdout = '';
    this.stderr = '';
    this.exitCode = undefined;
    this.exitSignal = undefined;
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (c) => (this.stdout += c));
    proc.stderr.on('data', (c) => (this.stderr += c));
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
      });
    });
  }

  get running() {
    return this.exitCode === undefined && this.exitSignal === undefined;
  }

  output() {
    return `--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`;
  }

  health(timeout = 3000) {
    return httpGet(this.port, '/healthz', timeout);
  }

  async waitHealthy(timeout = 15000) {
    return waitFor(
      async () => {
        if (!this.running) throw new Error(`fitsyncd exited (${this.exitCode ?? this.exitSignal})`);
        const r = await this.health(1000);
        return r.status === 200 ? r : false;
      },
      { timeout, interval: 100, what: 'GET /healthz 200' }
    );
  }

  /* A member (or other role) token signed with this server's secret. */
  token(sub, claims = {}) {
    return mintToken(this.secret, { sub, ...claims });
  }

  /* Connects and completes hello; returns the client (welcome in client.welcome). */
  async login(sub, deviceId = 'phone', claims = {}) {
    const c = await connect(this.url);
    const w = await c.request({ type: 'hello', token: this.token(sub, claims), device_id: deviceId });
    if (w.type !== 'welcome') {
      c.close();
      throw new Error(`hello for ${sub} failed: ${JSON.stringify(w)}`);
    }
    c.welcome = w;
    return c;
  }

  /*
   * The pids of this server's embedded redis-server. redis-server rewrites its
   * process title to "redis-server unixsocket:DIR/redis.sock", and runs with
   * cwd = DIR; either identifies it. Zombies are skipped.
   */
  redisPids() {
    const pids = [];
    const sock = path.join(this.dataDir, 'redis.sock');
    for (const ent of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(ent)) continue;
      try {
        const cmd = fs.readFileSync(`/proc/${ent}/cmdline`, 'utf8');
        if (!cmd.includes('redis-server')) continue;
        const stat = fs.readFileSync(`/proc/${ent}/stat`, 'utf8');
        if (/^\d+ \(.*\) Z/.test(stat)) continue;
        let cwd = '';
        try {
          cwd = fs.readlinkSync(`/proc/${ent}/cwd`);
        } catch {}
        if (cmd.includes(sock) || cwd === this.dataDir) pids.push(Number(ent));
      } catch {}
    }
    return pids;
  }

  /*
   * Sends signal and waits up to timeout ms for the process to exit.
   * Returns {code, signal, ms}. Falls back to SIGKILL (and then rejects)
   * if it does not exit in time.
   */
  async signal(sig = 'SIGTERM', timeout = 10000) {
    const t0 = Date.now();
    if (this.running) this.proc.kill(sig);
    try {
      const r = await withTimeout(this.exited, timeout, `fitsyncd to exit after ${sig}`);
      return { ...r, ms: Date.now() - t0 };
    } catch (e) {
      this.kill();
      throw e;
    }
  }

  /* The embedded Redis's Unix socket (DATA_DIR/redis.sock). */
  get redisSocket() {
    return path.join(this.dataDir, 'redis.sock');
  }

  /* Runs redis-cli against the server's Redis with args (in a cluster: -c, following MOVED); stdout trimmed. */
  redisCli(args, timeout = 10000) {
    const where = CLUSTER_DIR ? ['-c', '-p', String(clusterPrimaries()[0])] : ['-s', this.redisSocket];
    return execFileSync('redis-cli', [...where, ...args], { encoding: 'utf8', timeout }).trim();
  }

  /* Every key of the server's Redis (in a cluster: of every primary) matching a glob (SCAN), sorted. */
  redisKeys(pattern = '*') {
    const where = CLUSTER_DIR ? clusterPrimaries().map((p) => ['-p', String(p)]) : [['-s', this.redisSocket]];
    const keys = new Set();
    for (const w of where) {
      const out = execFileSync('redis-cli', [...w, '--scan', '--pattern', pattern], { encoding: 'utf8', timeout: 10000 }).trim();
      if (out) for (const k of out.split('\n')) keys.add(k);
    }
    return [...keys].sort();
  }

  /* Hard cleanup: SIGKILL the server and its redis child. Safe to call twice. */
  kill() {
    for (const pid of this.redisPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    if (this.running) {
      try {
        this.proc.kill('SIGKILL');
      } catch {}
    }
  }

  /* Graceful stop (SIGTERM, then SIGKILL after timeout), then removes the data dir. */
  async stop(timeout = 10000) {
    try {
      if (this.running) await this.signal('SIGTERM', timeout);
    } catch {
      /* killed by signal() */
    }
    await withTimeout(this.exited, 5000, 'fitsyncd to exit after SIGKILL').catch(() => {});
    for (const pid of this.redisPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    live.delete(this);
    if (!this.keepDataDir) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/* ------------------------------------------------------------------ */
/* the client                                                          */

/*
 * Opens a WebSocket. protocols: the subprotocols to offer (default
 * "fitsync.v1"; pass [] for none). Resolves with a Client once open; rejects
 * if the server refuses the upgrade (err.statusCode set when it answered HTTP).
 */
export function connect(url, { protocols = SUBPROTOCOL, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { handshakeTimeout: timeout });
    const client = new Client(ws);
    const fail = (err) => reject(err);
    ws.once('open', () => {
      ws.off('error', fail);
      resolve(client);
    });
    ws.once('error', fail);
    ws.once('unexpected-response', (req, res) => {
      const e = new Error(`upgrade refused: HTTP ${res.statusCode}`);
      e.statusCode = res.statusCode;
      res.resume();
      req.destroy();
      reject(e);
    });
  });
}

let nextId = 0;

export class Client {
  constructor(ws) {
    this.ws = ws;
    this.messages = []; // every message received, in order
    this.pushes = []; // messages without "re" that no one has taken yet
    this.waiters = []; // {pred, resolve}
    this.closeInfo = null;
    this.keepMessages = true; // false: do not record every message in this.messages
    this.inflight = new Map(); // re -> {resolve, reject} of pipeline() requests
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const [re, p] of this.inflight)
          p.reject(new Error(`connection closed (${code}) before the reply to ${re}`));
        this.inflight.clear();
        resolve(this.closeInfo);
      });
    });
    ws.on('error', () => {}); // surfaced through 'close'
    ws.on('message', (data, isBinary) => {
      let msg;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        msg = { type: '<unparsable>', raw: data.toString('utf8'), binary: isBinary };
      }
      if (this.keepMessages) this.messages.push(msg);
      if (msg.re !== undefined && this.inflight.has(msg.re)) {
        const p = this.inflight.get(msg.re);
        this.inflight.delete(msg.re);
        p.resolve(msg);
        return;
      }
      const i = this.waiters.findIndex((w) => w.pred(msg));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w.resolve(msg);
      } else if (msg.re === undefined) {
        this.pushes.push(msg);
      }
    });
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /* Sends a message as-is: an object is JSON-encoded, a string or Buffer goes raw. */
  send(msg, opts = {}) {
    const data = typeof msg === 'string' || Buffer.isBuffer(msg) ? msg : JSON.stringify(msg);
    return new Promise((resolve, reject) => this.ws.send(data, opts, (e) => (e ? reject(e) : resolve())));
  }

  /* Waits for the next message (including ones already taken as pushes) matching pred. */
  next(pred = () => true, timeout = 5000, what = 'a message') {
    const i = this.pushes.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.pushes.splice(i, 1)[0]);
    if (this.closeInfo) return Promise.reject(new Error(`connection closed while waiting for ${what}`));
    let entry;
    const p = new Promise((resolve, reject) => {
      entry = { pred, resolve };
      this.waiters.push(entry);
      this.closed.then(() => reject(new Error(`connection closed (${this.closeInfo.code}) while waiting for ${what}`)));
    });
    return withTimeout(p, timeout, what).finally(() => {
      const j = this.waiters.indexOf(entry);
      if (j >= 0) this.waiters.splice(j, 1);
    });
  }

  /* Waits for the next push of a type (a message without "re"). */
  nextPush(type, timeout = 5000) {
    return this.next((m) => m.re === undefined && m.type === type, timeout, `a "${type}" push`);
  }

  /*
   * Sends a request with a fresh id (unless msg.id is set) and resolves with
   * the reply whose "re" is that id (which may be an error reply).
   */
  async request(msg, timeout = 5000) {
    const id = msg.id ?? `r${++nextId}`;
    const p = this.next((m) => m.re === id, timeout, `the reply to ${msg.type} ${id}`);
    try {
      await this.send({ ...msg, id });
    } catch (e) {
      p.catch(() => {}); // the send's error is the one to report, not the reply's
      throw e;
    }
    return p;
  }

  /*
   * Sends a request without waiting for the send to complete and returns a
   * promise of its reply (matched by "re" through a map, so thousands may be
   * in flight at once; a second message with the same "re" is not caught).
   * msg.id is used if set, else a fresh one. The promise rejects if the
   * connection closes first; it has no timeout of its own (bound it with
   * withTimeout). Resending the same id while the first is in flight is refused.
   */
  pipeline(msg) {
    const id = msg.id ?? `r${++nextId}`;
    if (this.inflight.has(id)) return Promise.reject(new Error(`request id ${id} is already in flight`));
    if (this.closeInfo) return Promise.reject(new Error(`connection closed (${this.closeInfo.code})`));
    const p = new Promise((resolve, reject) => this.inflight.set(id, { resolve, reject }));
    this.ws.send(JSON.stringify({ ...msg, id }), (e) => {
      if (e && this.inflight.has(id)) {
        this.inflight.get(id).reject(e);
        this.inflight.delete(id);
      }
    });
    return p;
  }

  /* Takes (removes and returns) the collected pushes matching pred. */
  takePushes(pred = () => true) {
    const taken = this.pushes.filter(pred);
    this.pushes = this.pushes.filter((m) => !pred(m));
    return taken;
  }

  /* Sends raw text (or a Buffer) and waits for the next reply without "re" matching pred. */
  async sendRaw(data, pred = (m) => m.type === 'error', timeout = 5000, opts = {}) {
    const p = this.next((m) => m.re === undefined && pred(m), timeout, 'a reply to a raw frame');
    await this.send(data, opts);
    return p;
  }

  /* Resolves true if no message matching pred arrives within ms. */
  async quiet(pred, ms) {
    try {
      await this.next(pred, ms, 'silence');
      return false;
    } catch (e) {
      if (/timed out/.test(e.message)) return true;
      throw e;
    }
  }

  close(code = 1000) {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code);
  }

  /* Closes (if open) and waits for the close, bounded. */
  async closeAndWait(timeout = 3000) {
    this.close();
    await withTimeout(this.closed, timeout, 'the WebSocket to close').catch(() => this.ws.terminate());
  }
}

/* ------------------------------------------------------------------ */
/* calendar (independent of protocol/fit_time.c)                       */
/*
 * Instants are UTC milliseconds, offsets minutes east of UTC, local dates
 * "YYYY-MM-DD", ISO weeks "YYYY-Www".
 */

export const MIN = 60000;
export const DAY = 86400000;
export const pad = (n, w = 2) => String(n).padStart(w, '0');

/* +hh:mm / -hh:mm for an offset in minutes ("Z" only if z is set and off is 0). */
export function fmtOffset(off, z = false) {
  if (z && off === 0) return 'Z';
  const a = Math.abs(off);
  return `${off < 0 ? '-' : '+'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}
/* An instant written at an offset, to the second: 2026-03-02T07:30:00+08:00. */
export function rfc3339(ms, off, z = false) {
  return new Date(ms + off * MIN).toISOString().slice(0, 19) + fmtOffset(off, z);
}
/* Parses what rfc3339() writes (and Z): {ms, off}. */
export function parseRfc3339(s) {
  const m = /([+-])(\d\d):(\d\d)$/.exec(s);
  const off = m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
  return { ms: Date.parse(s), off };
}
export function localDate(ms, off) {
  return new Date(ms + off * MIN).toISOString().slice(0, 10);
}
export function dateMs(date) {
  const [y, m, d] = date.split('-').map(Number);
  return Date.UTC(y, m - 1, d);
}
export const addDays = (date, n) => new Date(dateMs(date) + n * DAY).toISOString().slice(0, 10);
/* UTC instant of local time hh:mm on date at offset off. */
export const at = (date, hh, mm, off) => dateMs(date) + (hh * 60 + mm - off) * MIN;
export const isoWeekday = (date) => ((new Date(dateMs(date)).getUTCDay() + 6) % 7) + 1; // 1 = Monday
export const mondayOf = (date) => addDays(date, 1 - isoWeekday(date));
/* ISO 8601 week name: the week belongs to the year of its Thursday. */
export function isoWeek(date) {
  const thu = addDays(date, 4 - isoWeekday(date));
  const year = Number(thu.slice(0, 4));
  const week = 1 + Math.floor((dateMs(thu) - Date.UTC(year, 0, 1)) / (7 * DAY));
  return `${year}-W${pad(week)}`;
}
/* The Monday (local date) of an ISO week name. */
export function weekMonday(week) {
  const [y, w] = week.split('-W').map(Number);
  const jan4 = `${y}-01-04`;
  return addDays(mondayOf(jan4), 7 * (w - 1));
}
/* The names of the ISO weeks from..to inclusive. */
export function weekRange(from, to) {
  const out = [];
  for (let d = weekMonday(from); d <= weekMonday(to); d = addDays(d, 7)) out.push(isoWeek(d));
  return out;
}

/*
 * The day rule of DESIGN.md as an independent oracle (no server code): per
 * local date {mo, vi, li} minutes. sessions: {start, end (UTC ms, whole
 * minutes), off (minutes east of UTC), level (1 light, 2 moderate, 3
 * vigorous)}; each minute counts once at the highest level covering it, on
 * the date of its own offset. summaries: {date, moderate_min|mo,
 * vigorous_min|vi, light_min|li}; a day takes the larger of its sessions and
 * its summaries, per intensity.
 */
export function dayModel(sessions, summaries = []) {
  const minutes = new Map(); // date -> Map(utc minute -> level)
  for (const s of sessions) {
    for (let t = s.start; t < s.end; t += MIN) {
      const d = localDate(t, s.off);
      if (!minutes.has(d)) minutes.set(d, new Map());
      const m = minutes.get(d);
      m.set(t, Math.max(m.get(t) || 0, s.level));
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
    day.mo = Math.max(day.mo, s.moderate_min ?? s.mo ?? 0);
    day.vi = Math.max(day.vi, s.vigorous_min ?? s.vi ?? 0);
    day.li = Math.max(day.li, s.light_min ?? s.li ?? 0);
    days.set(s.date, day);
  }
  return days;
}

/* ------------------------------------------------------------------ */
/* clients that behave like phones                                     */

/*
 * A phone with an offline queue: uploads its sessions in batches, and after a
 * lost connection reconnects (backoff 50..800 ms) and resends everything not
 * yet acknowledged. acked: client_id -> status of the first success;
 * ackTimes: the time (ms) of every acknowledged batch, for gaps in service.
 */
export class RetryingClient {
  constructor(url, token, sessions) {
    this.url = url;
    this.token = token;
    this.queue = sessions.map((s) => s.item);
    this.acked = new Map();
    this.ackTimes = [];
    this.resent = 0;
    this.reconnects = 0;
    this.stopped = false;
  }

  get done() {
    return this.acked.size === this.queue.length;
  }

  async run() {
    let backoff = 50;
    while (!this.stopped && !this.done) {
      let c;
      try {
        c = await connect(this.url, { timeout: 2000 });
        const w = await c.request({ type: 'hello', token: this.token, device_id: 'phone' }, 3000);
        if (w.type !== 'welcome') throw new Error(JSON.stringify(w));
        backoff = 50;
        while (!this.stopped && !this.done) {
          const batch = this.queue.filter((a) => !this.acked.has(a.client_id)).slice(0, 4);
          const r = await c.request({ type: 'activity.upload', activities: batch }, 5000);
          if (r.type !== 'activity.upload') throw new Error(JSON.stringify(r));
          if (r.accepted > 0) this.ackTimes.push(Date.now());
          r.results.forEach((res, i) => {
            if (res.status === 'created' || res.status === 'duplicate') {
              if (!this.acked.has(batch[i].client_id)) this.acked.set(batch[i].client_id, res.status);
              if (res.status === 'duplicate') this.resent++;
            } else if (!res.retryable) {
              throw new Error(`item refused for good: ${JSON.stringify(res)}`);
            }
          });
          await sleep(5);
        }
      } catch (e) {
        if (/refused for good/.test(e.message)) throw e;
        this.reconnects++;
        await sleep(backoff + Math.random() * backoff);
        backoff = Math.min(800, backoff * 2);
      } finally {
        if (c) c.close();
      }
    }
  }
}

// http.test.mjs: every HTTP request gets a complete answer (docs/PROTOCOL.md, "HTTP").
//
// Real clients against a real fitsyncd: node's fetch (undici, keep-alive),
// node:http with a keep-alive agent of one socket, curl, and a raw TCP socket
// for what clients refuse to send (a bad Content-Length, chunked bodies,
// CONNECT, pipelining). Every route of the table and two unknown paths are
// tried with every method; what each should answer is computed here from
// the route list below (methods, token, redirect), not copied from a run.
//
// The server runs with http.max_body_bytes = 65536 (FITSYNC_HTTP_MAX_BODY_BYTES)
// so bodies just under, at and over the limit stay small.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/http.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startServer, SOURCE_DIR } from './lib.mjs';

const LIMIT = 65536;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
const ALLOW_GET = 'GET, HEAD, OPTIONS';

/*
 * The routes as a client sees them. get: the status of a GET (with the token
 * given by auth, if any); file: the file a GET answers; location: a redirect.
 */
function routes(staff) {
  const dash = path.join(SOURCE_DIR, 'web/dashboard');
  return [
    { path: '/healthz', get: 200, type: /^application\/json/ },
    { path: '/metrics', get: 200, type: /^text\/plain/ },
    { path: '/api/v1/stats', get: 200, auth: staff, type: /^application\/json/ },
    { path: '/api/v1/stats', get: 401, label: 'without a token' },
    { path: '/api/v1/stats.csv', get: 200, auth: staff, type: /^text\/csv/ },
    { path: '/api/v1/events/no-such-event/results.csv', get: 404, auth: staff },
    { path: '/api/v1/events/no-such-event/results.csv', get: 401, label: 'without a token' },
    { path: '/', get: 302, location: '/dashboard/' },
    { path: '/dashboard', get: 302, location: '/dashboard/' },
    { path: '/dashboard/', get: 200, file: path.join(dash, 'index.html'), type: /^text\/html/ },
    { path: '/dashboard/app.js', get: 200, file: path.join(dash, 'app.js') },
    { path: '/dashboard/no-such-file.js', get: 404 },
  ];
}
const UNKNOWN = ['/nope', '/api/v1/nope', '/healthz/extra', '/api/v1/events/x/other.csv'];

/* What a method on a route must answer: {status, allow?, code?}. */
function expected(route, method) {
  if (!route) return { status: 404, code: 'not_found' };
  if (method === 'GET' || method === 'HEAD') return { status: route.get };
  if (method === 'OPTIONS') return { status: 200, allow: ALLOW_GET, empty: true };
  return { status: 405, allow: ALLOW_GET, code: 'method_not_allowed' };
}

/* Checks one answer (status, headers, body text) against expected(). */
function check(what, exp, route, method, { status, headers, body }) {
  assert.equal(status, exp.status, `${what}: status (body ${JSON.stringify(body.slice(0, 200))})`);
  if (exp.allow) assert.equal(headers.get('allow'), exp.allow, `${what}: Allow`);
  if (method === 'HEAD') {
    assert.equal(body, '', `${what}: HEAD must have no body`);
    return;
  }
  const len = headers.get('content-length');
  assert.equal(Number(len), Buffer.byteLength(body), `${what}: Content-Length ${len} vs the body received`);
  if (exp.empty) assert.equal(body, '', `${what}: empty body`);
  if (exp.code) {
    const doc = JSON.parse(body);
    assert.equal(doc.error, exp.code, `${what}: error code`);
    assert.equal(typeof doc.message, 'string');
  }
  if (route && method === 'GET' && exp.status === 200 && route.file)
    assert.equal(body, fs.readFileSync(route.file, 'utf8'), `${what}: the file's content`);
  if (route && method === 'GET' && exp.status === 200 && route.type)
    assert.match(headers.get('content-type'), route.type, `${what}: Content-Type`);
  if (route && method === 'GET' && route.location) assert.equal(headers.get('location'), route.location, `${what}: Location`);
  if (exp.status >= 400) assert.equal(typeof JSON.parse(body).error, 'string', `${what}: JSON error body`);
}

/* node:http request on a given agent; resolves {status, headers (Map-like), body, socket}. */
function nodeRequest(port, agent, method, urlPath, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent, headers, timeout: 5000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: new Map(Object.entries(res.headers)),
          body: Buffer.concat(chunks).toString('utf8'),
          port: req.socket?.localPort ?? res.socket?.localPort,
          reused: req.reusedSocket,
        })
      );
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within 5 s`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/* Raw TCP: sends bytes, collects everything until the server closes or `idle` ms pass quietly. */
function raw(port, bytes, idle = 700) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    let closed = false;
    let t;
    const done = () => {
      clearTimeout(t);
      s.destroy();
      resolve({ text: out, closed });
    };
    const arm = () => {
      clearTimeout(t);
      t = setTimeout(done, idle);
    };
    s.on('connect', () => {
      s.write(bytes);
      arm();
    });
    s.on('data', (d) => {
      out += d.toString('latin1');
      arm();
    });
    s.on('end', () => {
      closed = true;
      done();
    });
    s.on('error', reject);
  });
}

/* The status lines of the responses in a raw answer. */
const statusLines = (text) => [...text.matchAll(/HTTP\/1\.[01] \d{3}/g)].map((m) => m[0]);

function curl(args) {
  const r = spawnSync('curl', ['-s', '-S', '--max-time', '10', ...args], { encoding: 'utf8' });
  if (r.error) throw r.error;
  return r;
}

/* One curl call: -D - puts the headers on stdout before the body. */
function curlRequest(port, method, urlPath, { token, bodyFile } = {}) {
  // HEAD: -I prints the headers alone (with -D - they would come twice).
  const args = method === 'HEAD' ? ['-I'] : ['-D', '-', '-o', '-', '-X', method];
  if (token) args.push('-H', `Authorization: Bearer ${token}`);
  if (bodyFile) args.push('--data-binary', `@${bodyFile}`, '-H', 'Content-Type: application/octet-stream');
  args.push(`http://127.0.0.1:${port}${urlPath}`);
  const r = curl(args);
  assert.equal(r.status, 0, `curl ${method} ${urlPath} failed (exit ${r.status}): ${r.stderr}`);
  const sep = r.stdout.indexOf('\r\n\r\n');
  const head = r.stdout.slice(0, sep).split('\r\n');
  const headers = new Map();
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
  }
  return { status: Number(head[0].split(' ')[1]), headers, body: r.stdout.slice(sep + 4) };
}

describe('HTTP: every request gets an answer', () => {
  let srv, staff, tmp;

  before(async () => {
    srv = await startServer({ env: { FITSYNC_HTTP_MAX_BODY_BYTES: String(LIMIT) } });
    staff = srv.token('ops-1', { role: 'staff' });
    tmp = fs.mkdtempSync(path.join(srv.dataDir, 'bodies-'));
  });
  after(async () => {
    await srv?.stop();
  });

  it('fetch: every route and unknown path with every method', async () => {
    const table = routes(staff);
    const cases = [...table.map((r) => [r.path, r]), ...UNKNOWN.map((p) => [p, null])];
    for (const [p, route] of cases) {
      for (const method of METHODS) {
        const headers = route?.auth ? { authorization: `Bearer ${route.auth}` } : {};
        const hasBody = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(method);
        const res = await fetch(`http://127.0.0.1:${srv.port}${p}`, {
          method,
          headers,
          redirect: 'manual',
          body: hasBody ? JSON.stringify({ hello: 'x'.repeat(100) }) : undefined,
        });
        const body = await res.text();
        const what = `fetch ${method} ${p}${route?.label ? ` (${route.label})` : ''}`;
        check(what, expected(route, method), route, method, { status: res.status, headers: res.headers, body });
      }
    }
  });

  it('curl: every route and unknown path with every method (POST, PUT, PATCH, DELETE with a body)', () => {
    const file = path.join(tmp, 'small.json');
    fs.writeFileSync(file, JSON.stringify({ note: 'y'.repeat(3000) }));
    const table = routes(staff);
    const cases = [...table.map((r) => [r.path, r]), ...UNKNOWN.map((p) => [p, null])];
    for (const [p, route] of cases) {
      for (const method of METHODS) {
        const hasBody = ['POST', 'PUT', 'PATCH', 'DELETE'].includes(method);
        const res = curlRequest(srv.port, method, p, { token: route?.auth, bodyFile: hasBody ? file : undefined });
        const h = { get: (k) => res.headers.get(k) ?? null };
        check(`curl ${method} ${p}`, expected(route, method), route, method, { ...res, headers: h });
      }
    }
  });

  it('HEAD answers the headers of GET, with no body, and the connection goes on', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const p of ['/healthz', '/dashboard/app.js', '/dashboard/']) {
        const head = await nodeRequest(srv.port, agent, 'HEAD', p);
        const get = await nodeRequest(srv.port, agent, 'GET', p);
        assert.equal(head.status, 200, `HEAD ${p}`);
        assert.equal(head.body, '');
        assert.equal(head.headers.get('content-length'), get.headers.get('content-length'), `HEAD ${p}: Content-Length`);
        assert.equal(head.headers.get('content-type'), get.headers.get('content-type'), `HEAD ${p}: Content-Type`);
        assert.equal(Number(get.headers.get('content-length')), Buffer.byteLength(get.body));
        assert.ok(get.reused, `GET ${p} after HEAD did not reuse the keep-alive connection`);
      }
    } finally {
      agent.destroy();
    }
  });

  it('bodies up to http.max_body_bytes are read in full: the same connection then serves GET', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await nodeRequest(srv.port, agent, 'GET', '/healthz');
      assert.equal(first.status, 200);
      for (const n of [0, 1, 1000, 50000, LIMIT - 1, LIMIT]) {
        for (const [method, p, status] of [
          ['POST', '/healthz', 405],
          ['PUT', '/nope', 404],
          ['GET', '/healthz', 400], // no route reads a body: 400 (after reading it)
        ]) {
          const r = await nodeRequest(srv.port, agent, method, p, {
            body: Buffer.alloc(n, 0x61),
            headers: { 'content-length': String(n) },
          });
          const want = n === 0 && status === 400 ? 200 : status; // an empty body is no body
          assert.equal(r.status, want, `${method} ${p} with ${n} bytes: ${r.body}`);
          assert.equal(Number(r.headers.get('content-length')), Buffer.byteLength(r.body), `${method} ${p} ${n} B: complete body`);
          if (want !== 200) assert.ok(JSON.parse(r.body).error);
          if (want === 400) assert.equal(JSON.parse(r.body).field, 'Content-Length');
          assert.ok(r.reused, `${method} ${p} with ${n} bytes did not reuse the connection`);
          const next = await nodeRequest(srv.port, agent, 'GET', '/healthz');
          assert.equal(next.status, 200, `GET after ${method} of ${n} bytes`);
          assert.equal(JSON.parse(next.body).status, 'ok');
          assert.ok(next.reused, `GET after ${method} of ${n} bytes: not on the same connection`);
        }
      }
    } finally {
      agent.destroy();
    }
  });

  it('a body over the limit is 413 too_large naming http.max_body_bytes, and the connection closes', async () => {
    for (const n of [LIMIT + 1, 4 * 1024 * 1024]) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const r = await nodeRequest(srv.port, agent, 'POST', '/healthz', { body: Buffer.alloc(n, 0x62) });
        assert.equal(r.status, 413, `POST of ${n} bytes`);
        const doc = JSON.parse(r.body);
        assert.equal(doc.error, 'too_large');
        assert.equal(doc.field, 'Content-Length');
        assert.match(doc.message, new RegExp(`${n} bytes exceeds http\\.max_body_bytes \\(${LIMIT}\\)`));
        assert.equal(r.headers.get('connection'), 'close');
      } finally {
        agent.destroy();
      }
      const file = path.join(tmp, `big-${n}.bin`);
      fs.writeFileSync(file, Buffer.alloc(n, 0x63));
      const c = curlRequest(srv.port, 'PUT', '/api/v1/stats', { bodyFile: file });
      assert.equal(c.status, 413, `curl PUT of ${n} bytes`);
      assert.equal(JSON.parse(c.body).error, 'too_large');
    }
    assert.equal((await srv.health()).status, 200);
  });

  it('after a 413, a client still trickling the refused body is cut off about 10 s after the answer', async () => {
    const s = net.connect(srv.port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    let text = '';
    let answeredAt = 0;
    s.on('data', (d) => {
      text += d.toString('latin1');
      if (!answeredAt && /\r\n\r\n/.test(text)) answeredAt = Date.now();
    });
    const closed = new Promise((r) => s.on('close', () => r(Date.now())));
    s.on('error', () => {});
    s.write(`POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${100 * LIMIT}\r\n\r\n`);
    const drip = setInterval(() => s.writable && s.write('z'.repeat(10)), 250);
    const end = await Promise.race([closed, new Promise((r) => setTimeout(() => r(0), 20000))]);
    clearInterval(drip);
    s.destroy();
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.ok(end, 'the connection was still open 20 s after the 413');
    const after = (end - answeredAt) / 1000;
    assert.ok(after >= 9 && after < 13, `closed ${after.toFixed(1)} s after the answer`);
  });

  it('curl: a second request on the same connection after a POST with a body', () => {
    const file = path.join(tmp, 'post.bin');
    fs.writeFileSync(file, Buffer.alloc(40000, 0x64));
    const base = `http://127.0.0.1:${srv.port}`;
    const r = curl(['-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', '--data-binary', `@${file}`,
      `${base}/healthz`, '--next', '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', `${base}/healthz`]);
    assert.equal(r.status, 0, r.stderr);
    // num_connects counts new connections per transfer: the second reuses the first's.
    assert.deepEqual(r.stdout.trim().split('\n'), ['405 1', '200 0']);
  });

  it('raw: pipelined requests after a body: answered in order, or the connection closes; never a hang', async () => {
    const req =
      'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello worldGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
      'DELETE /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcHEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = await raw(srv.port, req, 1500);
    const got = statusLines(r.text).map((l) => l.split(' ')[1]);
    const want = ['404', '200', '405', '200'];
    // libwebsockets 4.1 cannot go on after a body followed by more bytes in its buffer;
    // fitsyncd then answers that request with Connection: close and closes (fit_http.c).
    assert.ok(got.length >= 2, `answers: ${got}`);
    assert.deepEqual(got, want.slice(0, got.length), r.text);
    if (got.length < want.length) {
      assert.ok(r.closed, 'fewer answers than requests, but the connection stayed open');
      assert.match(r.text.slice(r.text.lastIndexOf('HTTP/1.1')), /\r\nconnection: close\r\n/i);
    }
    assert.equal((await srv.health()).status, 200, 'the server must still answer');
  });

  it('raw: a malformed Content-Length is 400, a chunked body 411, CONNECT 501; each closes the connection', async () => {
    const cases = [
      ['GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', 400, 'invalid_value', 'Content-Length'],
      ['POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n', 400, 'invalid_value', 'Content-Length'],
      ['POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 411, 'invalid_value', 'Transfer-Encoding'],
      ['CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n', 501, 'method_not_allowed', undefined],
    ];
    for (const [bytes, status, code, field] of cases) {
      const r = await raw(srv.port, bytes, 2000);
      const lines = statusLines(r.text);
      assert.equal(lines.length, 1, `${JSON.stringify(bytes.split('\r\n')[0])}: ${r.text}`);
      assert.equal(Number(lines[0].split(' ')[1]), status, r.text);
      const doc = JSON.parse(r.text.slice(r.text.indexOf('\r\n\r\n') + 4));
      assert.equal(doc.error, code);
      assert.equal(doc.field, field);
      assert.ok(r.closed, `${status}: the connection should close after the answer`);
    }
    assert.equal((await srv.health()).status, 200);
  });

  it('headers of 7 KB (a long token) are read; past 8192 bytes the connection closes', async () => {
    const ok = await raw(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(7000)}\r\n\r\n`);
    assert.deepEqual(statusLines(ok.text), ['HTTP/1.1 200'], ok.text.slice(0, 300));
    const big = await raw(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(9000)}\r\n\r\n`, 2000);
    assert.deepEqual(statusLines(big.text), []);
    assert.ok(big.closed, 'over the header limit lws closes the connection');
    const staffLong = await fetch(`http://127.0.0.1:${srv.port}/api/v1/stats`, {
      headers: { authorization: `Bearer ${staff}`, 'x-pad': 'q'.repeat(3000) },
    });
    assert.equal(staffLong.status, 200);
  });

  it('wrong methods on token routes are 405 before any token check; OPTIONS lists the methods', async () => {
    const r = await fetch(`http://127.0.0.1:${srv.port}/api/v1/stats.csv`, { method: 'DELETE' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), ALLOW_GET);
    const o = await fetch(`http://127.0.0.1:${srv.port}/api/v1/events/relay/results.csv`, { method: 'OPTIONS' });
    assert.equal(o.status, 200);
    assert.equal(o.headers.get('allow'), ALLOW_GET);
    assert.equal(o.headers.get('content-length'), '0');
  });
});

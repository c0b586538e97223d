// trust.test.mjs: sessions that cannot be stretched, marshals that never see
// members' data, and finished events that stay finished (issue 12, items 3
// and 5), against a real fitsyncd with its embedded Redis.
//
// - A session whose token expires is closed with 4001 "token expired"; a
//   message sent after exp is refused (token_expired), never applied.
// - token.refresh with a newer token of the same subject keeps the session
//   open past the first token's exp; other subjects, roles or bad tokens are
//   refused and change nothing.
// - A connection that never says hello but answers pings is closed with 1008
//   "hello timeout"; a spectator holding a public board subscription is not.
// - marshal.token mints subject "marshal:<label>"; a marshal labelled like a
//   member gets none of that member's pushes; member tokens may not use the
//   namespace.
// - After event.finish, lap.record refuses new crossings (event_finished) and
//   leaves the results alone; a resent stored crossing still answers its
//   status; corrections still work; event.reopen (audited) lets late laps in.
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/trust.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, mintToken, sleep, rfc3339, tokenClaims } from './lib.mjs';

const now = () => Math.floor(Date.now() / 1000);
const OFF = 8 * 60;

describe('trust: tokens, hello timeout, marshals, finished events', { timeout: 90000 }, () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { FITSYNC_HELLO_TIMEOUT_MS: '800', FITSYNC_RATE_BURST: '1000' } });
  });
  after(async () => srv && (await srv.stop()));

  const session = (start) => ({
    client_id: `s-${Math.random().toString(36).slice(2)}`,
    type: 'running',
    start: rfc3339(start, OFF),
    duration_s: 600,
    intensity: 'moderate',
  });

  it('closes a session with 4001 when its token expires', async () => {
    const exp = now() + 2;
    const c = await connect(srv.url);
    const w = await c.request({ type: 'hello', token: srv.token('alice', { exp }), device_id: 'p' });
    assert.equal(w.type, 'welcome');
    assert.equal(Date.parse(w.token_expires_at) / 1000, exp, 'welcome says when the token expires');
    const info = await c.closed;
    assert.equal(info.code, 4001);
    assert.equal(info.reason, 'token expired');
  });

  it('refuses a message sent after exp, and applies nothing', async () => {
    const exp = now() + 1;
    const c = await connect(srv.url);
    await c.request({ type: 'hello', token: srv.token('bob', { exp }), device_id: 'p' });
    while (now() < exp) await sleep(20);
    // Between exp and the next sweep the dispatcher refuses, or the sweep has closed the session.
    const up = await c.request({ type: 'activity.upload', activities: [session(Date.now() - 3600e3)] }).catch((e) => e);
    if (!(up instanceof Error)) assert.equal(up.code, 'token_expired', JSON.stringify(up));
    assert.equal((await c.closed).code, 4001);
    const b = await srv.login('bob');
    const ex = await b.request({ type: 'account.export' });
    assert.deepEqual(ex.export.activities, [], 'nothing was stored after exp');
    b.close();
  });

  it('keeps a session open past exp after token.refresh; refuses other subjects', async () => {
    const c = await connect(srv.url);
    const w = await c.request({ type: 'hello', token: srv.token('carol', { exp: now() + 2 }), device_id: 'p' });
    assert.equal(w.type, 'welcome');
    const other = await c.request({ type: 'token.refresh', token: srv.token('mallory', { exp: now() + 3600 }) });
    assert.equal(other.code, 'forbidden');
    assert.equal(other.field, 'token');
    const role = await c.request({ type: 'token.refresh', token: srv.token('carol', { role: 'staff', exp: now() + 3600 }) });
    assert.equal(role.code, 'forbidden');
    const bad = await c.request({ type: 'token.refresh', token: mintToken('not-the-secret', { sub: 'carol', exp: now() + 3600 }) });
    assert.equal(bad.code, 'invalid_token');
    const none = await c.request({ type: 'token.refresh' });
    assert.equal(none.code, 'missing_field');
    // A field sent as null counts as absent (PROTOCOL.md, Conventions).
    assert.equal((await c.request({ type: 'token.refresh', token: null })).code, 'missing_field');
    assert.equal((await c.request({ type: 'activity.upload', activities: null })).code, 'missing_field');
    const exp = now() + 3600;
    const ok = await c.request({ type: 'token.refresh', token: srv.token('carol', { exp }) });
    assert.equal(ok.type, 'token.refresh', JSON.stringify(ok));
    assert.equal(Date.parse(ok.expires_at) / 1000, exp);
    await sleep(3000);
    assert.ok(c.isOpen, 'still open after the first token expired');
    const up = await c.request({ type: 'activity.upload', activities: [session(Date.now() - 3600e3)] });
    assert.equal(up.results[0].status, 'created');
    c.close();
  });

  it('closes a connection that never says hello, even though it answers pings', async () => {
    const c = await connect(srv.url);
    const t0 = Date.now();
    const info = await c.closed;
    assert.equal(info.code, 1008);
    assert.equal(info.reason, 'hello timeout');
    assert.ok(Date.now() - t0 >= 700, 'not before hello_timeout_ms');
  });

  it('lets a spectator with a public board subscription stay', async () => {
    const host = await srv.login('host-1', 'desk', { role: 'host', event: 'trust-run' });
    const cr = await host.request({
      type: 'event.create', event: 'trust-run', name: 'Trust Run', kind: 'timed_relay',
      starts_at: new Date(Date.now() - 60000).toISOString(), duration_s: 7200, lap_m: 400, min_lap_s: 0,
      categories: [{ id: 'open', name: 'Open', group: 'adult' }],
    });
    assert.equal(cr.status, 'created', JSON.stringify(cr));
    const spec = await connect(srv.url);
    const sub = await spec.request({ type: 'leaderboard.subscribe', board: 'event:trust-run:all' });
    assert.equal(sub.type, 'leaderboard.subscribe', JSON.stringify(sub));
    await sleep(1800);
    assert.ok(spec.isOpen, 'the spectator is still connected');
    spec.close();
    host.close();
  });

  it('mints marshal subjects in their own namespace and never sends them a member\'s pushes', async () => {
    const host = await srv.login('host-2', 'desk', { role: 'host', event: 'trust-run' });
    const mt = await host.request({ type: 'marshal.token', event: 'trust-run', marshal: 'dave' });
    assert.equal(mt.marshal, 'dave');
    assert.equal(tokenClaims(mt.token).sub, 'marshal:dave');
    const long = await host.request({ type: 'marshal.token', event: 'trust-run', marshal: 'x'.repeat(57) });
    assert.equal(long.code, 'invalid_value');
    assert.equal(long.field, 'marshal');
    const m = await connect(srv.url);
    const mw = await m.request({ type: 'hello', token: mt.token, device_id: 'gate' });
    assert.equal(mw.user, 'marshal:dave');
    // A host-minted "member" marshal from before: a marshal token whose sub is a member's id.
    const spy = await connect(srv.url);
    const sw = await spy.request({ type: 'hello', token: srv.token('dave', { role: 'marshal', event: 'trust-run' }), device_id: 'x' });
    assert.equal(sw.type, 'welcome');
    const dave = await srv.login('dave', 'phone');
    const watch = await srv.login('dave', 'watch');
    const up = await dave.request({ type: 'activity.upload', activities: [session(Date.now() - 3600e3)] });
    assert.equal(up.results[0].status, 'created');
    await watch.nextPush('change', 3000); // the member's other device does get it
    assert.ok(await spy.quiet((x) => x.type === 'change' || x.type === 'progress', 800), 'a marshal session gets no member pushes');
    assert.ok(await m.quiet((x) => x.type === 'change' || x.type === 'progress', 100));
    const reserved = await connect(srv.url);
    const rw = await reserved.request({ type: 'hello', token: srv.token('marshal:dave'), device_id: 'p' });
    assert.equal(rw.code, 'invalid_token');
    for (const c of [m, spy, dave, watch, reserved, host]) c.close();
  });

  it('freezes a finished event: new laps refused, corrections and reopen audited', async () => {
    const host = await srv.login('host-3', 'desk', { role: 'host', event: 'trust-run' });
    const reg = await host.request({ type: 'team.register', event: 'trust-run', bib: '7', name: 'Seven', category: 'open' });
    assert.equal(reg.status, 'created', JSON.stringify(reg));
    const mt = await host.request({ type: 'marshal.token', event: 'trust-run', marshal: 'gate' });
    const m = await connect(srv.url);
    await m.request({ type: 'hello', token: mt.token, device_id: 'gate' });
    const t = Date.now();
    const st = await host.request({ type: 'event.start', event: 'trust-run', at: new Date(t - 60000).toISOString() });
    assert.equal(st.status, 'ok', JSON.stringify(st));
    const lap = (id, ms) => ({ client_id: id, bib: '7', at: new Date(ms).toISOString() });
    const r1 = await m.request({ type: 'lap.record', event: 'trust-run', laps: [lap('c1', t - 30000), lap('c2', t - 20000)] });
    assert.deepEqual(r1.results.map((x) => x.status), ['counted', 'counted']);
    assert.equal((await host.request({ type: 'event.finish', event: 'trust-run' })).status, 'ok');
    const before = await host.request({ type: 'event.results', event: 'trust-run' });
    const r2 = await m.request({ type: 'lap.record', event: 'trust-run', laps: [lap('c2', t - 20000), lap('c3', t - 10000)] });
    assert.equal(r2.event_state, 'finished');
    assert.equal(r2.results[0].status, 'counted', 'a resent stored crossing answers its status');
    assert.equal(r2.results[1].status, 'error');
    assert.equal(r2.results[1].code, 'event_finished');
    assert.equal(r2.results[1].field, 'laps[1]');
    assert.equal(r2.accepted, 1);
    assert.equal(r2.rejected, 1);
    const after1 = await host.request({ type: 'event.results', event: 'trust-run' });
    assert.deepEqual(after1, { ...before, re: after1.re }, 'results unchanged by the refused lap');
    const v = await host.request({ type: 'lap.void', event: 'trust-run', client_id: 'c1', reason: 'double scan seen on video' });
    assert.equal(v.status, 'void', JSON.stringify(v));
    const notFinished = await host.request({ type: 'event.reopen', event: 'trust-run' });
    assert.equal(notFinished.code, 'missing_field');
    const re = await host.request({ type: 'event.reopen', event: 'trust-run', reason: 'gate queue arrived late' });
    assert.equal(re.status, 'ok', JSON.stringify(re));
    const again = await host.request({ type: 'event.reopen', event: 'trust-run', reason: 'twice' });
    assert.equal(again.code, 'conflict');
    const forbidden = await m.request({ type: 'event.reopen', event: 'trust-run', reason: 'marshals may not' });
    assert.equal(forbidden.code, 'forbidden');
    const r3 = await m.request({ type: 'lap.record', event: 'trust-run', laps: [lap('c3', t - 10000)] });
    assert.equal(r3.results[0].status, 'counted');
    const audit = await host.request({ type: 'event.audit', event: 'trust-run' });
    const ops = JSON.stringify(audit);
    assert.match(ops, /"op":"reopen"/);
    assert.match(ops, /gate queue arrived late/);
    assert.match(ops, /"by":"host-3"/);
    m.close();
    host.close();
  });
});

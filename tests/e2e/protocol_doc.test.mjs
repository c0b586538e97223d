// protocol_doc.test.mjs: docs/PROTOCOL.md is replayed against a real fitsyncd,
// so the document cannot go stale (issue 13, item 6).
//
// Every ```json request block that is followed by a ```json block whose "re"
// is the request's "id" is a request/reply pair. The pairs are sent in the
// document's order (the examples tell one story: alice's uploads, edits and
// deletes, then boards, a relay and the staff figures) on one server:
// member messages on a session of "alice", event and staff messages on a
// staff session, hello and token.refresh on their own with tokens minted for
// this server. Each reply must have the documented `type`; an error must
// have the documented `code` (and `field`); any other reply must have every
// top-level field the document shows. Values are not compared (clocks,
// cursors and tokens differ from run to run). Every mismatch is listed at
// once. A comment right before a request says how to replay it:
// `<!-- replay: unauthenticated -->` sends it before hello, on a connection
// of its own; `<!-- replay: skip: why -->` leaves it out (where it needs
// another server setting or state; the reason names the test that covers it).
//
// Run: FITSYNC_BUILD_DIR=build FITSYNC_SOURCE_DIR=. node --test tests/e2e/protocol_doc.test.mjs

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, connect, withTimeout, SOURCE_DIR } from './lib.mjs';

const DOC = path.join(SOURCE_DIR, 'docs/PROTOCOL.md');

/* The request/reply pairs of the document, in order: [{line, request, reply, how}]. */
function examplePairs(text) {
  const blocks = [];
  const re = /```json\n([\s\S]*?)```/g;
  let m;
  let last = 0;
  while ((m = re.exec(text))) {
    const before = text.slice(last, m.index);
    last = re.lastIndex;
    let value;
    try {
      value = JSON.parse(m[1]);
    } catch {
      continue; // an excerpt with "…" in it, not a message
    }
    const how = /<!-- replay: ([a-z]+)(?::\s*(.*?))? -->\s*$/.exec(before);
    blocks.push({ line: text.slice(0, m.index).split('\n').length, value, how: how ? how[1] : '', why: how?.[2] });
  }
  const pairs = [];
  for (let i = 0; i + 1 < blocks.length; i++) {
    const a = blocks[i].value;
    const b = blocks[i + 1].value;
    if (a && typeof a === 'object' && typeof a.type === 'string' && a.id !== undefined && b && b.re === a.id) {
      pairs.push({ line: blocks[i].line, request: a, reply: b, how: blocks[i].how, why: blocks[i].why });
      i++;
    }
  }
  return pairs;
}

const STAFF_TYPES = /^(event|team|lap|marshal|award|stats)\./;

describe('docs/PROTOCOL.md examples replayed against the server', { timeout: 120000 }, () => {
  let srv;
  const sessions = new Map();
  before(async () => {
    srv = await startServer({
      env: { FITSYNC_MAX_AGE_WEEKS: '0', FITSYNC_RATE_MESSAGES_PER_S: '100000', FITSYNC_RATE_BURST: '100000' },
    });
  });
  after(async () => {
    for (const c of sessions.values()) c.close();
    if (srv) await srv.stop();
  });

  /* A signed-in session (reconnected if an example closed it, e.g. account.delete). */
  async function session(who) {
    const c = sessions.get(who);
    if (c && c.isOpen) return c;
    const fresh = who === 'staff' ? await srv.login('staff-doc', 'desk', { role: 'staff' }) : await srv.login('alice', 'pixel-7');
    sessions.set(who, fresh);
    return fresh;
  }

  it('has request/reply examples to replay', () => {
    const pairs = examplePairs(fs.readFileSync(DOC, 'utf8'));
    assert.ok(pairs.length >= 30, `found ${pairs.length} pairs`);
  });

  it('answers every example as documented', async () => {
    const pairs = examplePairs(fs.readFileSync(DOC, 'utf8'));
    const mismatches = [];
    const skipped = pairs.filter((p) => p.how === 'skip');
    assert.ok(skipped.every((p) => p.why), 'every skip says why');
    assert.ok(skipped.length <= 5, `few examples skipped: ${skipped.map((p) => p.line)}`);
    for (const { line, request, reply, how } of pairs) {
      if (how === 'skip') continue;
      let got;
      const req = { ...request };
      if (req.type === 'hello' || req.type === 'token.refresh') req.token = srv.token('alice');
      if (req.type === 'hello' || how === 'unauthenticated') {
        const c = await connect(srv.url);
        got = await c.request(req);
        c.close();
      } else {
        const c = await session(STAFF_TYPES.test(req.type) ? 'staff' : 'alice');
        got = await c.request(req, 10000);
        // A deleted account's devices are closed (1000): wait for it, the next example reconnects.
        if (got.type === 'account.delete') await withTimeout(c.closed, 5000, 'the deleted account\'s close');
      }
      const where = `PROTOCOL.md:${line} ${request.type}`;
      if (got.type !== reply.type) {
        mismatches.push(`${where}: type ${got.type} (${got.code || ''} ${got.message || ''}), documented ${reply.type}`);
        continue;
      }
      if (reply.type === 'error') {
        if (got.code !== reply.code) mismatches.push(`${where}: code ${got.code}, documented ${reply.code}`);
        if (reply.field !== undefined && got.field !== reply.field)
          mismatches.push(`${where}: field ${got.field}, documented ${reply.field}`);
        continue;
      }
      const missing = Object.keys(reply).filter((k) => !(k in got));
      if (missing.length) mismatches.push(`${where}: reply lacks ${missing.join(', ')}`);
    }
    assert.deepEqual(mismatches, [], `examples that do not match the server:\n${mismatches.join('\n')}`);
  });
});

#!/usr/bin/env node
// relay-sim: rehearse a timed team relay against a running fitsyncd.
//
// It plays a whole event at a sped-up clock, the way the day will go: the
// host (a token for sub "host-sim", role host, this event) creates the event
// from a config/events/*.json file, imports the teams as CSV (team.import),
// mints one token per marshal (marshal.token) and starts the event; the
// marshals' devices then scan bibs at the line and upload the crossings in
// batches (lap.record) as simulated time passes. Some crossings are scanned
// twice a few seconds apart (double scans), one marshal loses its connection
// for a while and uploads its queue late, a few runners cross after the
// cut-off, a couple of bibs are mistyped, and the host voids laps and restores
// one (with reasons) and hands out awards. Then it finishes the event and
// prints the final standings per category, as the server computed them.
//
// The simulated event started in the past, so every crossing time `at` is
// real past time (the server refuses crossings in its future): with --speed
// 120 the two hours of a relay are played in one minute.
//
// Setup: cd tests/e2e && npm ci   (for the `ws` package)
//
// Example (server on :8080 with the default data dir):
//   node tools/relay-sim.mjs --url ws://127.0.0.1:8080/ --data-dir data \
//     --event-file config/events/charity-relay.json --unique --speed 120
//
// Options (defaults in brackets):
//   --url URL                    the server [ws://127.0.0.1:8080/]
//   --event-file FILE            an event.create body [config/events/charity-relay.json]
//   --suffix S | --unique        append S (or "-sim-<time>") to the event id, so reruns do not collide
//   --teams N                    [250]
//   --duration-s S               event length; overrides the file's duration_s
//   --speed X                    clock speed-up [120]
//   --marshals N                 [4]
//   --double-scan-rate R         share of crossings scanned twice [0.03]
//   --offline-marshal-minutes M  one marshal offline for M simulated minutes, then uploads late [20; 0 = none]
//   --late-laps N                teams whose runner crosses after the cut-off [5]
//   --unknown-bibs N             scans of bibs no team wears [2]
//   --corrections N              laps voided by the host [2]
//   --restores N                 of those, restored later [1]
//   --awards "A,B"               awards to hand out [Most creative costume,Best team spirit]
//   --seed N                     the same seed plays the same event [1]
//   --secret S                   token secret; else FITSYNC_TOKEN_SECRET, else DIR/token.secret
//   --data-dir DIR               where fitsyncd keeps token.secret [data]
//   --token T                    a host token to use instead of minting one (its event must be the id)
//   --dump FILE                  write everything sent and received as JSON (crossings, corrections, results)
//   --csv FILE                   also download the results CSV over HTTP (GET /api/v1/events/<id>/results.csv)
//   --flags                      read every crossing's final flag (event.laps per team) for the summary;
//                                slow under the default rate limit (20 messages/s)
//   --quiet                      standings and summary only

import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { runRelay, loadEventFile, findSecret, fmtElapsed, mintToken } from './relay-sim-lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function usage() {
  const text = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.startsWith('//'))
    .map((l) => l.slice(3))
    .join('\n');
}

function fetchCsv(wsUrl, eventId, token) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = `/api/v1/events/${eventId}/results.csv`;
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.get(u, { headers: { Authorization: `Bearer ${token}` }, timeout: 10000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error('GET results.csv: timed out')));
    req.on('error', reject);
  });
}

function printStandings(results) {
  const line = (s) => process.stdout.write(`${s}\n`);
  line(
    `\n${results.name} (${results.event}), ${results.state}; laps of ${results.lap_m} m, ${results.duration_s / 3600} h\n`,
  );
  for (const cat of results.categories) {
    line(`${cat.name} [${cat.group}]`);
    line(`  rank  bib    laps  distance  last lap  team`);
    for (const t of cat.standings) {
      const last = t.last_lap_elapsed_s === null ? '-' : fmtElapsed(t.last_lap_elapsed_s * 1000);
      const awards = t.awards.length ? `  [${t.awards.join('; ')}]` : '';
      line(
        `  ${String(t.rank).padStart(4)}  ${t.bib.padEnd(5)} ${String(t.laps).padStart(5)}  ${`${(t.distance_m / 1000).toFixed(1)} km`.padStart(8)}  ${last.padStart(8)}  ${t.name}${awards}`,
      );
    }
    line('');
  }
}

async function main() {
  const { values: v } = parseArgs({
    options: {
      url: { type: 'string', default: 'ws://127.0.0.1:8080/' },
      'event-file': { type: 'string', default: path.join(here, '../config/events/charity-relay.json') },
      suffix: { type: 'string', default: '' },
      unique: { type: 'boolean', default: false },
      teams: { type: 'string', default: '250' },
      'duration-s': { type: 'string' },
      speed: { type: 'string', default: '120' },
      marshals: { type: 'string', default: '4' },
      'double-scan-rate': { type: 'string', default: '0.03' },
      'offline-marshal-minutes': { type: 'string', default: '20' },
      'late-laps': { type: 'string', default: '5' },
      'unknown-bibs': { type: 'string', default: '2' },
      corrections: { type: 'string', default: '2' },
      restores: { type: 'string', default: '1' },
      awards: { type: 'string', default: 'Most creative costume,Best team spirit' },
      seed: { type: 'string', default: '1' },
      secret: { type: 'string' },
      'data-dir': { type: 'string', default: 'data' },
      token: { type: 'string' },
      dump: { type: 'string' },
      csv: { type: 'string' },
      flags: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (v.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const num = (name, { int = true, min = 0 } = {}) => {
    const x = Number(v[name]);
    if (!Number.isFinite(x) || x < min || (int && !Number.isInteger(x)))
      throw new Error(`--${name} must be a number >= ${min}`);
    return x;
  };
  const def = loadEventFile(v['event-file']);
  let suffix = v.suffix;
  if (v.unique) suffix += `-sim-${Date.now().toString(36)}`;
  const hostToken = v.token || undefined;
  const secret = hostToken ? undefined : findSecret({ secret: v.secret, dataDir: v['data-dir'] });
  const log = v.quiet ? () => {} : (s) => process.stderr.write(`${s}\n`);

  const t0 = Date.now();
  const dump = await runRelay({
    url: v.url,
    def,
    suffix,
    secret,
    hostToken,
    teams: num('teams', { min: 1 }),
    durationS: v['duration-s'] ? num('duration-s', { min: 60 }) : undefined,
    speed: num('speed', { int: false, min: 1 }),
    marshals: num('marshals', { min: 1 }),
    doubleScanRate: num('double-scan-rate', { int: false }),
    offlineMarshalMinutes: num('offline-marshal-minutes', { int: false }),
    lateLaps: num('late-laps'),
    unknownBibs: num('unknown-bibs'),
    corrections: num('corrections'),
    restores: num('restores'),
    awards: v.awards
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    seed: num('seed'),
    log,
    progressEveryMs: v.quiet ? 0 : 5000,
    readFlags: v.flags,
  });

  printStandings(dump.results);
  const s = dump.stats;
  const rec = s.status_at_receipt;
  const summary = [
    `event        ${dump.event.id} (started ${dump.event.started_at}, simulated; speed x${dump.event.speed})`,
    `teams        ${s.teams} in ${dump.results.categories.length} categories`,
    `crossings    ${s.crossings} sent in ${s.batches} batches by ${dump.marshals.length} marshals: ` +
      Object.entries(rec)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ') +
      ' (flag on receipt; a late upload can change it)',
    `generated    ${s.double_scans_generated} double scans, ${s.late_generated} crossings after the cut-off; ${s.rejected} refused`,
    ...(s.final_flags
      ? [
          `final flags  ${Object.entries(s.final_flags)
            .map(([k, n]) => `${n} ${k}`)
            .join(', ')}`,
        ]
      : []),
    dump.offline
      ? `offline      marshal ${dump.offline.marshal} for ${(dump.offline.to_ms - dump.offline.from_ms) / 60000} min, uploaded ${dump.offline.uploaded} crossings late`
      : 'offline      none',
    `corrections  ${dump.corrections.map((c) => `${c.op} ${c.client_id} (${c.reason})`).join('; ') || 'none'}`,
    `awards       ${dump.awards.map((a) => `${a.award}: bib ${a.bib}`).join('; ') || 'none'}`,
    `laps counted ${s.laps_counted} (${((s.laps_counted * dump.event.lap_m) / 1000).toFixed(1)} km)`,
    `time         ${(s.run_wall_ms / 1000).toFixed(1)} s of laps, ${((Date.now() - t0) / 1000).toFixed(1)} s in all`,
  ];
  process.stdout.write(`summary\n${summary.map((l) => `  ${l}`).join('\n')}\n`);

  if (v.dump) {
    fs.writeFileSync(v.dump, JSON.stringify(dump, null, 1));
    log(`wrote ${v.dump}`);
  }
  if (v.csv) {
    const token = hostToken || mintToken(secret, { sub: 'host-sim', role: 'host', event: dump.event.id });
    const r = await fetchCsv(v.url, dump.event.id, token);
    if (r.status !== 200) throw new Error(`GET results.csv: HTTP ${r.status}: ${r.text}`);
    fs.writeFileSync(v.csv, r.text);
    log(`wrote ${v.csv}`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`relay-sim: ${e.message}\n`);
    process.exit(1);
  },
);

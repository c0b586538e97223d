// Reads one line of Redis MONITOR output (a FCALL fit_activity_put that a real
// upload made) on stdin and prints its arguments one per line, with the member
// and the client_id replaced by redis-benchmark's __rand_int__, so that each
// benchmark call is a new upload of a new member. Used by tools/bench.sh and
// tools/bench-cluster.sh for the Functions ceiling.
// MONITOR quotes every argument ("..." with \" and \\ escapes, \xHH for bytes).
import fs from 'node:fs';

const line = fs.readFileSync(0, 'utf8').trim();
const args = [...line.slice(line.indexOf('"')).matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) =>
  m[1].replace(/\\x([0-9a-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))).replace(/\\(.)/g, '$1')
);
const user = args[3].match(/:u:([^/]+)\/log$/)[1];
const cid = args[6];
for (const a of args) console.log(a.split(cid).join('c__rand_int__').split(':u:' + user + '/').join(':u:rb__rand_int__/'));

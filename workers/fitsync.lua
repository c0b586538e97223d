#!lua name=fitsync
--[[
fitsync's Redis Functions library: every mutation is one atomic call here
(DESIGN.md decision 2), so dedup, the day's aggregate, the week, the indexes
and the change log change together or not at all. fitsyncd embeds this file
and loads it with FUNCTION LOAD REPLACE on every (re)connect.

Every call names one key, the user's change log, and derives the user's other
keys from it: they share its prefix and so its shard tag {sN} and its cluster
slot (DESIGN.md decision 3). With P = "fit:{sN}:u:<user>/" (user ids may hold
':' but never '/', so one user's keys can never be spelled as another's):

  P.."log"          stream  the change log: one entry per upsert or delete
  P.."a:"<cid>      hash    a session: doc (as sent), rev, days (JSON
                            [[date, week], ...]), del ("1" = tombstone)
  P.."d:"<date>     hash    a local day: s:<cid> -> segment, m:<source> ->
                            summary snapshot, x:<source> -> summary tombstone
  P.."w:"<week>     hash    <date> -> the day's totals (JSON)
  P.."p"            hash    profile fields
  P.."acts"         zset    client_id -> start (UTC ms), tombstones included
  P.."sums"         zset    "<date>|<source>" -> local midnight (UTC ms)
  P.."days", P.."wks"  sets  every date and ISO week the user has data in

A segment is [start_ms, end_ms, level, strength, balance, steps, distance_m]
with times in UTC milliseconds and level 1 light, 2 moderate, 3 vigorous.
A day's totals are {mo, vi, li (minutes), st (steps), di (metres), sg, ba}.

The day rule (DESIGN.md, WHO 2020 rules): the sessions of a day count as
their union, and where sessions of different intensity overlap the higher
wins; the day's summaries and its sessions combine per intensity as the
larger of the two, never the sum. Minutes are rounded once per day and
intensity, half up. Because a day is always recomputed from everything it
holds, deletes and edits leave totals exactly what the surviving data says.

Revisions: a session starts at rev 1; each update or delete adds 1. An
update or delete names the rev it was based on; if another change came
first, the call answers "conflict" with the current item, and nothing is
lost or overwritten silently. Re-sending a change that was already applied
answers "duplicate".
--]]

local function prefix_of(logkey)
    return string.sub(logkey, 1, -4)
end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function minutes(ms)
    return math.floor(ms / 60000 + 0.5)
end

-- Recomputes one local day from every segment and summary it holds, and
-- writes (or removes) its totals in the week hash.
local function recompute_day(P, date, week)
    local dkey, wkey = P .. 'd:' .. date, P .. 'w:' .. week
    local h = redis.call('HGETALL', dkey)
    local ev = {}
    local mo, vi, li, ssteps, sdist = 0, 0, 0, 0, 0
    local asteps, adist, strength, balance, live = 0, 0, 0, 0, false
    for i = 1, #h, 2 do
        local kind = string.sub(h[i], 1, 2)
        if kind == 's:' then
            local s = cjson.decode(h[i + 1])
            live = true
            ev[#ev + 1] = {s[1], s[3], 1}
            ev[#ev + 1] = {s[2], s[3], -1}
            if s[4] == 1 then strength = 1 end
            if s[5] == 1 then balance = 1 end
            if s[6] > 0 then asteps = asteps + s[6] end
            if s[7] > 0 then adist = adist + s[7] end
        elseif kind == 'm:' then
            local m = cjson.decode(h[i + 1])
            live = true
            mo = math.max(mo, m.mo)
            vi = math.max(vi, m.vi)
            li = math.max(li, m.li)
            ssteps = math.max(ssteps, m.st)
            sdist = math.max(sdist, m.di)
        end
    end
    if not live then
        redis.call('HDEL', wkey, date)
        return
    end
    -- Sweep the boundaries; each elementary interval goes to the highest
    -- intensity of the sessions covering it, so overlaps count once.
    table.sort(ev, function(a, b)
        if a[1] ~= b[1] then return a[1] < b[1] end
        return a[3] < b[3]
    end)
    local cnt, ms, prev = {0, 0, 0}, {0, 0, 0}, nil
    for _, e in ipairs(ev) do
        if prev and e[1] > prev then
            local lvl = (cnt[3] > 0 and 3) or (cnt[2] > 0 and 2) or (cnt[1] > 0 and 1) or 0
            if lvl > 0 then ms[lvl] = ms[lvl] + (e[1] - prev) end
        end
        cnt[e[2]] = cnt[e[2]] + e[3]
        prev = e[1]
    end
    local day = {
        mo = math.max(mo, minutes(ms[2])),
        vi = math.max(vi, minutes(ms[3])),
        li = math.max(li, minutes(ms[1])),
        st = math.max(ssteps, asteps),
        di = math.max(sdist, adist),
        sg = strength,
        ba = balance,
    }
    redis.call('HSET', wkey, date, cjson.encode(day))
end

-- Appends one change to the log, trimming entries older than the window.
-- Returns the new cursor (the stream entry id).
local function log_change(P, window_ms, kind, op, id, rev, doc, device)
    local minid = tostring(math.max(0, now_ms() - window_ms))
    local fields = {'k', kind, 'op', op, 'id', id, 'rev', tostring(rev), 'dev', device}
    if doc then
        fields[#fields + 1] = 'doc'
        fields[#fields + 1] = doc
    end
    return redis.call('XADD', P .. 'log', 'MINID', minid, '*', unpack(fields))
end

-- Adds a session's segments to its days; returns the [[date, week]] list.
local function add_segments(P, cid, args, first, n)
    local days = {}
    for i = 0, n - 1 do
        local date, week, seg = args[first + 3 * i], args[first + 3 * i + 1], args[first + 3 * i + 2]
        redis.call('HSET', P .. 'd:' .. date, 's:' .. cid, seg)
        redis.call('SADD', P .. 'days', date)
        redis.call('SADD', P .. 'wks', week)
        recompute_day(P, date, week)
        days[#days + 1] = {date, week}
    end
    return days
end

local function remove_segments(P, cid, days)
    for _, dw in ipairs(days) do
        redis.call('HDEL', P .. 'd:' .. dw[1], 's:' .. cid)
        recompute_day(P, dw[1], dw[2])
    end
end

-- Appends the distinct weeks of day lists to reply r.
local function add_weeks(r, ...)
    local seen = {}
    for _, days in ipairs({...}) do
        for _, dw in ipairs(days) do
            if not seen[dw[2]] then
                seen[dw[2]] = true
                r[#r + 1] = dw[2]
            end
        end
    end
    return r
end

-- fit_activity_put: store a new session, idempotent by client_id.
-- ARGV: device, window_ms, client_id, doc, start_ms, n, then (date, week, segment) x n.
-- Returns {"created", rev, cursor, weeks...} | {"duplicate", rev} | {"deleted", rev}
--       | {"conflict", rev, doc}.
local function activity_put(keys, args)
    local P = prefix_of(keys[1])
    local device, window, cid, doc = args[1], tonumber(args[2]), args[3], args[4]
    local akey = P .. 'a:' .. cid
    local cur = redis.call('HMGET', akey, 'doc', 'rev', 'del')
    if cur[2] then
        if cur[3] == '1' then return {'deleted', tonumber(cur[2])} end
        if cur[1] == doc then return {'duplicate', tonumber(cur[2])} end
        return {'conflict', tonumber(cur[2]), cur[1]}
    end
    local days = add_segments(P, cid, args, 7, tonumber(args[6]))
    redis.call('HSET', akey, 'doc', doc, 'rev', 1, 'days', cjson.encode(days), 'del', '0')
    redis.call('ZADD', P .. 'acts', args[5], cid)
    local cursor = log_change(P, window, 'activity', 'upsert', cid, 1, doc, device)
    return add_weeks({'created', 1, cursor}, days)
end

-- fit_activity_update: replace a session's content if base_rev is current.
-- ARGV: device, window_ms, client_id, base_rev, doc, start_ms, n, then (date, week, segment) x n.
-- Returns {"updated", rev, cursor, weeks...} | {"duplicate", rev} | {"not_found"}
--       | {"conflict", rev, doc, deleted}.
local function activity_update(keys, args)
    local P = prefix_of(keys[1])
    local device, window, cid = args[1], tonumber(args[2]), args[3]
    local base, doc = tonumber(args[4]), args[5]
    local akey = P .. 'a:' .. cid
    local cur = redis.call('HMGET', akey, 'doc', 'rev', 'del', 'days')
    if not cur[2] then return {'not_found'} end
    local rev = tonumber(cur[2])
    if cur[3] == '1' then return {'conflict', rev, '', '1'} end
    if rev ~= base then
        if rev == base + 1 and cur[1] == doc then return {'duplicate', rev} end
        return {'conflict', rev, cur[1], '0'}
    end
    local old = cjson.decode(cur[4])
    remove_segments(P, cid, old)
    local days = add_segments(P, cid, args, 8, tonumber(args[7]))
    rev = rev + 1
    redis.call('HSET', akey, 'doc', doc, 'rev', rev, 'days', cjson.encode(days))
    redis.call('ZADD', P .. 'acts', args[6], cid)
    local cursor = log_change(P, window, 'activity', 'upsert', cid, rev, doc, device)
    return add_weeks({'updated', rev, cursor}, old, days)
end

-- fit_activity_delete: turn a session into a tombstone and recompute its days.
-- ARGV: device, window_ms, client_id, base_rev ("" = unconditional).
-- Returns {"deleted", rev, cursor, weeks...} | {"duplicate", rev} | {"not_found"}
--       | {"conflict", rev, doc}.
local function activity_delete(keys, args)
    local P = prefix_of(keys[1])
    local device, window, cid = args[1], tonumber(args[2]), args[3]
    local akey = P .. 'a:' .. cid
    local cur = redis.call('HMGET', akey, 'doc', 'rev', 'del', 'days')
    if not cur[2] then return {'not_found'} end
    local rev = tonumber(cur[2])
    if cur[3] == '1' then return {'duplicate', rev} end
    if args[4] ~= '' and tonumber(args[4]) ~= rev then return {'conflict', rev, cur[1]} end
    local old = cjson.decode(cur[4])
    remove_segments(P, cid, old)
    rev = rev + 1
    redis.call('HSET', akey, 'rev', rev, 'del', '1', 'days', '[]')
    redis.call('HDEL', akey, 'doc')
    local cursor = log_change(P, window, 'activity', 'delete', cid, rev, nil, device)
    return add_weeks({'deleted', rev, cursor}, old)
end

-- fit_activity_get: the stored item. ARGV: client_id. Returns {rev, doc, del} or {}.
local function activity_get(keys, args)
    local cur = redis.call('HMGET', prefix_of(keys[1]) .. 'a:' .. args[1], 'rev', 'doc', 'del')
    if not cur[1] then return {} end
    return {tonumber(cur[1]), cur[2] or '', cur[3] or '0'}
end

-- fit_summary_put: upsert one daily summary; the newest recorded_at wins
-- whatever the arrival order (equal recorded_at: the larger document wins,
-- so every order ends in the same state). A deleted summary keeps its
-- recorded_at as a tombstone: only a newer snapshot brings the day back.
-- ARGV: device, window_ms, date, week, source, recorded_at_ms, doc, mo, vi, li,
--       steps, distance, day_ms.
-- Returns {"applied", cursor, week} | {"duplicate"} | {"stale"}.
local function summary_put(keys, args)
    local P = prefix_of(keys[1])
    local device, window, date, week, source = args[1], tonumber(args[2]), args[3], args[4], args[5]
    local rec, doc = tonumber(args[6]), args[7]
    local dkey = P .. 'd:' .. date
    local cur = redis.call('HGET', dkey, 'm:' .. source)
    if cur then
        local c = cjson.decode(cur)
        if c.r > rec then return {'stale'} end
        if c.r == rec then
            if c.doc == doc then return {'duplicate'} end
            if c.doc > doc then return {'stale'} end
        end
    else
        local tomb = redis.call('HGET', dkey, 'x:' .. source)
        if tomb and tonumber(tomb) >= rec then return {'stale'} end
    end
    local m = {
        r = rec, doc = doc,
        mo = tonumber(args[8]), vi = tonumber(args[9]), li = tonumber(args[10]),
        st = tonumber(args[11]), di = tonumber(args[12]),
    }
    redis.call('HSET', dkey, 'm:' .. source, cjson.encode(m))
    redis.call('HDEL', dkey, 'x:' .. source)
    redis.call('SADD', P .. 'days', date)
    redis.call('SADD', P .. 'wks', week)
    redis.call('ZADD', P .. 'sums', args[13], date .. '|' .. source)
    recompute_day(P, date, week)
    local cursor = log_change(P, window, 'summary', 'upsert', date .. '|' .. source, 1, doc, device)
    return {'applied', cursor, week}
end

-- fit_summary_delete: remove a day's summary from one source.
-- ARGV: device, window_ms, date, week, source.
-- Returns {"deleted", cursor, week} | {"duplicate"} | {"not_found"}.
local function summary_delete(keys, args)
    local P = prefix_of(keys[1])
    local device, window, date, week, source = args[1], tonumber(args[2]), args[3], args[4], args[5]
    local dkey = P .. 'd:' .. date
    local cur = redis.call('HGET', dkey, 'm:' .. source)
    if not cur then
        if redis.call('HEXISTS', dkey, 'x:' .. source) == 1 then return {'duplicate'} end
        return {'not_found'}
    end
    local c = cjson.decode(cur)
    redis.call('HDEL', dkey, 'm:' .. source)
    redis.call('HSET', dkey, 'x:' .. source, tostring(c.r))
    redis.call('ZREM', P .. 'sums', date .. '|' .. source)
    recompute_day(P, date, week)
    local cursor = log_change(P, window, 'summary', 'delete', date .. '|' .. source, 1, nil, device)
    return {'deleted', cursor, week}
end

-- fit_profile_set: set (or, for an empty value, remove) profile fields.
-- ARGV: device, window_ms, then field, value, ...
-- Returns {cursor, {field, value, ...}} (the whole profile after the change).
local function profile_set(keys, args)
    local P = prefix_of(keys[1])
    for i = 3, #args, 2 do
        if args[i + 1] == '' then
            redis.call('HDEL', P .. 'p', args[i])
        else
            redis.call('HSET', P .. 'p', args[i], args[i + 1])
        end
    end
    local h = redis.call('HGETALL', P .. 'p')
    local obj = {}
    for i = 1, #h, 2 do obj[h[i]] = h[i + 1] end
    local doc = cjson.encode(obj)
    local cursor = log_change(P, tonumber(args[2]), 'profile', 'upsert', 'profile', 1, doc, args[1])
    return {cursor, h}
end

-- fit_weeks_get: day totals of some weeks and the profile that sets their band.
-- ARGV: week names. Returns {profile hash, week hash, week hash, ...}.
local function weeks_get(keys, args)
    local P = prefix_of(keys[1])
    local r = {redis.call('HGETALL', P .. 'p')}
    for i = 1, #args do r[#r + 1] = redis.call('HGETALL', P .. 'w:' .. args[i]) end
    return r
end

-- The newest cursor, "0-0" for an empty log.
local function head(P)
    local last = redis.call('XREVRANGE', P .. 'log', '+', '-', 'COUNT', 1)
    if #last == 0 then return '0-0' end
    return last[1][1]
end

local function id_less(a, b)
    local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
    local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
    ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
    return ams < bms or (ams == bms and aseq < bseq)
end

-- fit_sync_pull: changes after a cursor, oldest first.
-- ARGV: cursor, limit, window_ms. A cursor older than the window, or older than
-- an entry already trimmed from the log, answers {"resync_required"}.
-- Returns {"ok", cursor, more, entries...} with each entry [id, fields].
local function sync_pull(keys, args)
    local P = prefix_of(keys[1])
    local cursor, limit, window = args[1], tonumber(args[2]), tonumber(args[3])
    local ms = tonumber(string.match(cursor, '^(%d+)-%d+$'))
    if not ms then return {'bad_cursor'} end
    if redis.call('EXISTS', P .. 'log') == 1 then
        local info = redis.call('XINFO', 'STREAM', P .. 'log')
        for i = 1, #info, 2 do
            if info[i] == 'max-deleted-entry-id' and id_less(cursor, info[i + 1]) then
                return {'resync_required'}
            end
        end
        if id_less(head(P), cursor) then return {'bad_cursor'} end
    elseif cursor ~= '0-0' then
        return {'bad_cursor'}
    end
    if cursor ~= '0-0' and ms < now_ms() - window then return {'resync_required'} end
    local entries = redis.call('XRANGE', P .. 'log', '(' .. cursor, '+', 'COUNT', limit + 1)
    local more = 0
    if #entries > limit then
        more = 1
        entries[#entries] = nil
    end
    local last = cursor
    if #entries > 0 then last = entries[#entries][1] end
    local r = {'ok', last, more}
    for _, e in ipairs(entries) do r[#r + 1] = e end
    return r
end

-- fit_sync_head: the current cursor. Returns a string.
local function sync_head(keys, args)
    return head(prefix_of(keys[1]))
end

-- fit_state: the user's whole state, for sync.snapshot (ARGV: from_ms, only
-- sessions starting and summaries dated after it) and account.export (ARGV: 0).
-- Returns {cursor, profile hash, {cid, rev, doc, ...}, {key, doc, ...}, weeks}.
local function state(keys, args)
    local P = prefix_of(keys[1])
    local from = args[1]
    local acts = {}
    for _, cid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'acts', from, '+inf')) do
        local a = redis.call('HMGET', P .. 'a:' .. cid, 'rev', 'doc', 'del')
        if a[3] ~= '1' and a[2] then
            acts[#acts + 1] = cid
            acts[#acts + 1] = a[1]
            acts[#acts + 1] = a[2]
        end
    end
    local sums = {}
    for _, k in ipairs(redis.call('ZRANGEBYSCORE', P .. 'sums', from, '+inf')) do
        local date, source = string.match(k, '^([^|]+)|(.+)$')
        local m = redis.call('HGET', P .. 'd:' .. date, 'm:' .. source)
        if m then
            sums[#sums + 1] = k
            sums[#sums + 1] = cjson.decode(m).doc
        end
    end
    return {head(P), redis.call('HGETALL', P .. 'p'), acts, sums, redis.call('SMEMBERS', P .. 'wks')}
end

-- fit_account_delete: removes every key of the user. Returns the number deleted.
local function account_delete(keys, args)
    local P = prefix_of(keys[1])
    local n = 0
    local function del(k) n = n + redis.call('DEL', k) end
    for _, cid in ipairs(redis.call('ZRANGE', P .. 'acts', 0, -1)) do del(P .. 'a:' .. cid) end
    for _, d in ipairs(redis.call('SMEMBERS', P .. 'days')) do del(P .. 'd:' .. d) end
    for _, w in ipairs(redis.call('SMEMBERS', P .. 'wks')) do del(P .. 'w:' .. w) end
    for _, k in ipairs({'p', 'log', 'acts', 'sums', 'days', 'wks'}) do del(P .. k) end
    return n
end

redis.register_function('fit_activity_put', activity_put)
redis.register_function('fit_activity_update', activity_update)
redis.register_function('fit_activity_delete', activity_delete)
redis.register_function('fit_summary_put', summary_put)
redis.register_function('fit_summary_delete', summary_delete)
redis.register_function('fit_profile_set', profile_set)
redis.register_function('fit_account_delete', account_delete)
local ro = {'no-writes'}
redis.register_function{function_name = 'fit_activity_get', callback = activity_get, flags = ro}
redis.register_function{function_name = 'fit_weeks_get', callback = weeks_get, flags = ro}
redis.register_function{function_name = 'fit_sync_pull', callback = sync_pull, flags = ro}
redis.register_function{function_name = 'fit_sync_head', callback = sync_head, flags = ro}
redis.register_function{function_name = 'fit_state', callback = state, flags = ro}

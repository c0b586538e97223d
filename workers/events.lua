--[[
Live challenges: a timed team relay (laps at a line, categories, awards) as
Redis Functions, one event per shard. Every call names the event's meta key
and derives the rest from it. With E = "fit:{sN}:e:<event>/":

  E.."meta"        hash  doc (the definition as created), kind, state
                         (scheduled | started | finished), start_ms, dur_ms,
                         lap_m, min_lap_ms, public ("1"/"0"), cats (JSON ids)
  E.."team:"<bib>  hash  name, category, laps, last_ms (-1 = none)
  E.."teams"       set   bibs
  E.."lap:"<cid>   hash  bib, at (UTC ms, as recorded on the marshal's device),
                         by (marshal), void ("1"), st (counted | double | late
                         | early | void), doc (as sent, for idempotency)
  E.."bl:"<bib>    zset  lap client_id -> at: a team's crossings in time order
  E.."st:all"      zset  bib -> laps x 2^36 + (2^36 - 1 - ms from start to last lap)
  E.."st:cat:"<c>  zset  the same per category
  E.."awards"      hash  bib -> JSON list of awards
  E.."audit"       list  JSON entries: every start, finish, correction and award

The lap rule: a team's crossings are taken in order of the time recorded on
the device (never of arrival: offline marshals upload late). A crossing
counts when it is at or after the official start, at or before start +
duration, not voided, and at least min_lap_s after the team's previous
counted crossing; one closer than that is a double scan: kept, flagged, not
counted. Because a late upload can change which crossings count, a team's
flags are recomputed from all its crossings on every change. Standings:
laps (descending), then the time of the last counted lap (earlier first);
distance = laps x lap_m. Every change announces the boards it touched on
"fit:lb" ("event:<id>:all", "event:<id>:cat:<c>"), like weekly boards.
--]]

local function base_of(meta_key)
    return string.sub(meta_key, 1, -5)
end

local function event_of(E)
    return string.match(E, ':e:(.*)/$')
end

local function audit(E, entry)
    entry.t = now_ms()
    redis.call('RPUSH', E .. 'audit', cjson.encode(entry))
end

local function meta(E)
    local m = redis.call('HMGET', E .. 'meta', 'kind', 'state', 'start_ms', 'dur_ms', 'min_lap_ms',
                         'lap_m', 'public', 'cats')
    if not m[1] then return nil end
    return {kind = m[1], state = m[2], start = tonumber(m[3]), dur = tonumber(m[4]),
            min_lap = tonumber(m[5]), lap_m = tonumber(m[6]), public = m[7], cats = m[8]}
end

-- The staff figures' row of an event: fit:{sN}:evs, event -> JSON [name, kind,
-- state, teams, laps], rewritten by every call that changes one of them, so
-- fit_stats_read reads all events in one HGETALL, not two commands per event.
local function event_row(E)
    local m = redis.call('HMGET', E .. 'meta', 'doc', 'kind', 'state', 'laps')
    local name = m[1] and cjson.decode(m[1]).name
    if type(name) ~= 'string' then name = event_of(E) end
    redis.call('HSET', shard_of(E) .. 'evs', event_of(E), cjson.encode({name, m[2] or '', m[3] or '',
               redis.call('SCARD', E .. 'teams'), tonumber(m[4] or '0')}))
end

-- Recomputes one team's crossings and its place in the standings.
-- Returns true when the team's counted laps changed.
local function recompute_team(E, m, bib, touched)
    local team = redis.call('HMGET', E .. 'team:' .. bib, 'category')
    if not team[1] then return false end
    local laps, last = 0, -1
    local crossings = redis.call('ZRANGE', E .. 'bl:' .. bib, 0, -1, 'WITHSCORES')
    for i = 1, #crossings, 2 do
        local cid, at = crossings[i], tonumber(crossings[i + 1])
        local st
        if redis.call('HGET', E .. 'lap:' .. cid, 'void') == '1' then
            st = 'void'
        elseif not m.start or at < m.start then
            st = 'early'
        elseif at > m.start + m.dur then
            st = 'late'
        elseif last >= 0 and at - last < m.min_lap then
            st = 'double'
        else
            st = 'counted'
            laps = laps + 1
            last = at
        end
        redis.call('HSET', E .. 'lap:' .. cid, 'st', st)
    end
    local old_laps = tonumber(redis.call('HGET', E .. 'team:' .. bib, 'laps') or '0')
    redis.call('HSET', E .. 'team:' .. bib, 'laps', laps, 'last_ms', last)
    if laps ~= old_laps then
        -- Counted laps, for the staff figures (per event and programme-wide).
        redis.call('HINCRBY', E .. 'meta', 'laps', laps - old_laps)
        redis.call('HINCRBY', shard_of(E) .. 'tot', 'laps', laps - old_laps)
    end
    local rel = last >= 0 and (last - m.start) or (TIE - 1)
    local score = laps * TIE + (TIE - 1 - math.max(0, math.min(TIE - 1, rel)))
    if laps == 0 then score = 0 end
    local id = event_of(E)
    redis.call('ZADD', E .. 'st:all', score, bib)
    redis.call('ZADD', E .. 'st:cat:' .. team[1], score, bib)
    touched[#touched + 1] = 'event:' .. id .. ':all'
    touched[#touched + 1] = 'event:' .. id .. ':cat:' .. team[1]
    return laps ~= old_laps
end

local function recompute_all(E, m)
    local touched = {}
    for _, bib in ipairs(redis.call('SMEMBERS', E .. 'teams')) do recompute_team(E, m, bib, touched) end
    publish(touched)
    event_row(E)
end

-- fit_event_create. KEYS: meta. ARGV: doc, kind, dur_ms, lap_m, min_lap_ms, public, cats JSON, actor.
-- Returns "created" | "duplicate" | "conflict".
local function event_create(keys, args)
    local E = base_of(keys[1])
    local cur = redis.call('HGET', E .. 'meta', 'doc')
    if cur then
        if cur == args[1] then return 'duplicate' end
        return 'conflict'
    end
    redis.call('HSET', E .. 'meta', 'doc', args[1], 'kind', args[2], 'state', 'scheduled',
               'dur_ms', args[3], 'lap_m', args[4], 'min_lap_ms', args[5], 'public', args[6],
               'cats', args[7])
    redis.call('HINCRBY', shard_of(E) .. 'tot', 'events', 1)
    audit(E, {op = 'create', by = args[8]})
    event_row(E)
    return 'created'
end

-- fit_team_register. KEYS: meta. ARGV: bib, name, category.
-- Returns "created" | "duplicate" | "conflict" | "not_found" | "bad_category".
local function team_register(keys, args)
    local E = base_of(keys[1])
    local m = meta(E)
    if not m then return 'not_found' end
    local ok = false
    for _, c in ipairs(cjson.decode(m.cats)) do ok = ok or c == args[3] end
    if not ok then return 'bad_category' end
    local cur = redis.call('HMGET', E .. 'team:' .. args[1], 'name', 'category')
    if cur[1] then
        if cur[1] == args[2] and cur[2] == args[3] then return 'duplicate' end
        return 'conflict'
    end
    redis.call('HSET', E .. 'team:' .. args[1], 'name', args[2], 'category', args[3], 'laps', 0,
               'last_ms', -1)
    redis.call('SADD', E .. 'teams', args[1])
    redis.call('HINCRBY', shard_of(E) .. 'tot', 'participations', 1)
    local touched = {}
    recompute_team(E, m, args[1], touched)
    publish(touched)
    event_row(E)
    return 'created'
end

-- fit_event_start / fit_event_finish. KEYS: meta. ARGV: at_ms (start only), actor.
-- Returns "ok" | "not_found" | "already" (finish twice).
local function event_start(keys, args)
    local E = base_of(keys[1])
    local m = meta(E)
    if not m then return 'not_found' end
    -- A finished event's results are final: starting it again would rewrite them.
    if m.state == 'finished' then return 'finished' end
    redis.call('HSET', E .. 'meta', 'start_ms', args[1], 'state', 'started')
    audit(E, {op = 'start', at = tonumber(args[1]), by = args[2]})
    m.start = tonumber(args[1])
    recompute_all(E, m)
    return 'ok'
end

local function event_finish(keys, args)
    local E = base_of(keys[1])
    local m = meta(E)
    if not m then return 'not_found' end
    if m.state == 'finished' then return 'already' end
    redis.call('HSET', E .. 'meta', 'state', 'finished')
    audit(E, {op = 'finish', by = args[1]})
    event_row(E)
    return 'ok'
end

-- fit_event_reopen: a host lets late laps in again after event.finish (audited).
-- KEYS: meta. ARGV: reason, actor. Returns "ok" | "not_found" | "not_finished".
local function event_reopen(keys, args)
    local E = base_of(keys[1])
    local m = meta(E)
    if not m then return 'not_found' end
    if m.state ~= 'finished' then return 'not_finished' end
    redis.call('HSET', E .. 'meta', 'state', 'started')
    audit(E, {op = 'reopen', reason = args[1], by = args[2]})
    return 'ok'
end

-- fit_lap_record: a batch of crossings from one marshal; idempotent by client_id.
-- KEYS: meta. ARGV: marshal, n, then (client_id, bib, at_ms, doc) x n.
-- Returns the event's state (or "not_found"), then one status per crossing:
-- counted | double | late | early | void (its flag after recomputing), or
-- unknown_bib | conflict | event_finished. A crossing sent again reports its
-- current flag. A finished event's results are final: a new crossing is
-- refused (event_finished) until a host calls event.reopen.
local function lap_record(keys, args)
    local E = base_of(keys[1])
    local m = meta(E)
    if not m then return {'not_found'} end
    local r, bibs, items = {m.state}, {}, {}
    local n = tonumber(args[2])
    for i = 0, n - 1 do
        local cid, bib, at, doc = args[3 + 4 * i], args[4 + 4 * i], args[5 + 4 * i], args[6 + 4 * i]
        local cur = redis.call('HMGET', E .. 'lap:' .. cid, 'doc')
        if cur[1] then
            items[#items + 1] = (cur[1] == doc) and cid or 'conflict'
        elseif m.state == 'finished' then
            items[#items + 1] = 'event_finished'
        elseif redis.call('SISMEMBER', E .. 'teams', bib) == 0 then
            items[#items + 1] = 'unknown_bib'
        else
            redis.call('HSET', E .. 'lap:' .. cid, 'bib', bib, 'at', at, 'by', args[1], 'doc', doc)
            redis.call('ZADD', E .. 'bl:' .. bib, at, cid)
            bibs[bib] = true
            items[#items + 1] = cid
        end
    end
    local touched, laps = {}, false
    for bib in pairs(bibs) do laps = recompute_team(E, m, bib, touched) or laps end
    publish(touched)
    if laps then event_row(E) end
    for _, it in ipairs(items) do
        if it == 'conflict' or it == 'unknown_bib' or it == 'event_finished' then
            r[#r + 1] = it
        else
            r[#r + 1] = redis.call('HGET', E .. 'lap:' .. it, 'st')
        end
    end
    return r
end

-- fit_lap_void / fit_lap_restore: a host's correction, kept in the audit list.
-- KEYS: meta. ARGV: client_id, reason, actor, "1" (void) | "" (restore).
-- Returns the crossing's flag after the change, or "not_found".
local function lap_correct(keys, args)
    local E = base_of(keys[1])
    local m = meta(E)
    local bib = redis.call('HGET', E .. 'lap:' .. args[1], 'bib')
    if not m or not bib then return 'not_found' end
    if args[4] == '1' then
        redis.call('HSET', E .. 'lap:' .. args[1], 'void', '1')
    else
        redis.call('HDEL', E .. 'lap:' .. args[1], 'void')
    end
    audit(E, {op = args[4] == '1' and 'lap.void' or 'lap.restore', lap = args[1], bib = bib,
              reason = args[2], by = args[3]})
    local touched = {}
    if recompute_team(E, m, bib, touched) then event_row(E) end
    publish(touched)
    return redis.call('HGET', E .. 'lap:' .. args[1], 'st')
end

-- fit_award_assign. KEYS: meta. ARGV: bib, award, actor. Returns "ok" | "duplicate" | "not_found".
local function award_assign(keys, args)
    local E = base_of(keys[1])
    if redis.call('SISMEMBER', E .. 'teams', args[1]) == 0 then return 'not_found' end
    local list = cjson.decode(redis.call('HGET', E .. 'awards', args[1]) or '[]')
    for _, a in ipairs(list) do if a == args[2] then return 'duplicate' end end
    list[#list + 1] = args[2]
    redis.call('HSET', E .. 'awards', args[1], cjson.encode(list))
    audit(E, {op = 'award', bib = args[1], award = args[2], by = args[3]})
    return 'ok'
end

-- fit_event_get (read-only). KEYS: meta. Returns the meta hash (flat), or {}.
local function event_get(keys, args)
    return redis.call('HGETALL', keys[1])
end

-- fit_event_top (read-only): the top n of a standings key.
-- KEYS: E.."st:all" or E.."st:cat:<c>". ARGV: n, public_only ("1": refuse a private event).
-- Returns {size, (bib, score, name, category, laps, last_ms, lap_m) x n}, or {"private"} /
-- {"not_found"}.
local function event_top(keys, args)
    local key = keys[1]
    local E = string.match(key, '^(.*/)st:')
    local m = meta(E)
    if not m then return {'not_found'} end
    if args[2] == '1' and m.public ~= '1' then return {'private'} end
    local r = {redis.call('ZCARD', key)}
    -- Teams tied with the n-th are all read, then ordered by bib, as the results sheet is
    -- (Redis itself orders equal scores by reverse bib).
    local n = tonumber(args[1])
    local top = {}
    local last = redis.call('ZREVRANGE', key, n - 1, n - 1, 'WITHSCORES')
    local floor = last[2] or '-inf'
    local rows = redis.call('ZREVRANGEBYSCORE', key, '+inf', floor, 'WITHSCORES')
    local list = {}
    for i = 1, #rows, 2 do list[#list + 1] = {rows[i], tonumber(rows[i + 1]), rows[i + 1]} end
    table.sort(list, function(a, b)
        if a[2] ~= b[2] then return a[2] > b[2] end
        return a[1] < b[1]
    end)
    for i = 1, math.min(n, #list) do
        top[#top + 1] = list[i][1]
        top[#top + 1] = list[i][3]
    end
    for i = 1, #top, 2 do
        local t = redis.call('HMGET', E .. 'team:' .. top[i], 'name', 'category', 'laps', 'last_ms')
        r[#r + 1] = top[i]
        r[#r + 1] = top[i + 1]
        r[#r + 1] = t[1] or ''
        r[#r + 1] = t[2] or ''
        r[#r + 1] = t[3] or '0'
        r[#r + 1] = t[4] or '-1'
        r[#r + 1] = tostring(m.lap_m)
    end
    return r
end

-- fit_event_results (read-only): everything a results sheet needs.
-- KEYS: meta. Returns {meta (flat), {bib, name, category, laps, last_ms, awards JSON} x teams}.
local function event_results(keys, args)
    local E = base_of(keys[1])
    local teams = {}
    for _, bib in ipairs(redis.call('SMEMBERS', E .. 'teams')) do
        local t = redis.call('HMGET', E .. 'team:' .. bib, 'name', 'category', 'laps', 'last_ms')
        teams[#teams + 1] = bib
        teams[#teams + 1] = t[1]
        teams[#teams + 1] = t[2]
        teams[#teams + 1] = t[3]
        teams[#teams + 1] = t[4]
        teams[#teams + 1] = redis.call('HGET', E .. 'awards', bib) or '[]'
    end
    return {redis.call('HGETALL', keys[1]), teams}
end

-- fit_event_audit (read-only). KEYS: meta. Returns the audit entries (JSON), oldest first.
local function event_audit(keys, args)
    return redis.call('LRANGE', base_of(keys[1]) .. 'audit', 0, -1)
end

-- fit_event_laps (read-only). KEYS: meta. ARGV: bib. Returns (client_id, at, st, by) x crossings.
local function event_laps(keys, args)
    local E = base_of(keys[1])
    local r = {}
    for _, cid in ipairs(redis.call('ZRANGE', E .. 'bl:' .. args[1], 0, -1)) do
        local l = redis.call('HMGET', E .. 'lap:' .. cid, 'at', 'st', 'by')
        r[#r + 1] = cid
        r[#r + 1] = l[1]
        r[#r + 1] = l[2]
        r[#r + 1] = l[3]
    end
    return r
end

redis.register_function('fit_event_create', event_create)
redis.register_function('fit_team_register', team_register)
redis.register_function('fit_event_start', event_start)
redis.register_function('fit_event_finish', event_finish)
redis.register_function('fit_event_reopen', event_reopen)
redis.register_function('fit_lap_record', lap_record)
redis.register_function('fit_lap_correct', lap_correct)
redis.register_function('fit_award_assign', award_assign)
local ro = {'no-writes'}
redis.register_function{function_name = 'fit_event_get', callback = event_get, flags = ro}
redis.register_function{function_name = 'fit_event_top', callback = event_top, flags = ro}
redis.register_function{function_name = 'fit_event_results', callback = event_results, flags = ro}
redis.register_function{function_name = 'fit_event_audit', callback = event_audit, flags = ro}
redis.register_function{function_name = 'fit_event_laps', callback = event_laps, flags = ro}

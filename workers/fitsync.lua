#!lua name=fitsync
--[[
fitsync's Redis Functions library: every mutation is one atomic call here
(DESIGN.md decision 2), so dedup, the day's aggregate and the week change
together or not at all. fitsyncd embeds this file and loads it with
FUNCTION LOAD REPLACE on every (re)connect.

Keys (all of one user share the shard tag {sN}, so a call stays on one shard):
  fit:{sN}:u:<user>:a:<client_id>  hash  doc (the session as sent), rev, days
  fit:{sN}:u:<user>:d:<YYYY-MM-DD>  hash  s:<client_id> -> segment on that local day
                                          m:<source>    -> daily summary snapshot
  fit:{sN}:u:<user>:w:<YYYY-Www>    hash  <YYYY-MM-DD>  -> the day's totals (JSON)
  fit:{sN}:u:<user>:p               hash  profile fields

A segment is [start_ms, end_ms, level, strength, balance, steps, distance_m]
with times in UTC milliseconds and level 1 light, 2 moderate, 3 vigorous.
A day's totals are {mo, vi, li (minutes), st (steps), di (metres), sg, ba}.

The day rule (DESIGN.md, WHO 2020 rules): the sessions of a day count as
their union, and where sessions of different intensity overlap the higher
wins; the day's summaries and its sessions combine per intensity as the
larger of the two, never the sum. Minutes are rounded once per day and
intensity, half up.
--]]

local function minutes(ms)
    return math.floor(ms / 60000 + 0.5)
end

-- Recomputes one local day from every segment and summary it holds, and
-- writes (or removes) its totals in the week hash.
local function recompute_day(dkey, wkey, date)
    local h = redis.call('HGETALL', dkey)
    if #h == 0 then
        redis.call('HDEL', wkey, date)
        return
    end
    local ev = {}
    local mo, vi, li, ssteps, sdist = 0, 0, 0, 0, 0
    local asteps, adist, strength, balance = 0, 0, 0, 0
    for i = 1, #h, 2 do
        local kind = string.sub(h[i], 1, 2)
        if kind == 's:' then
            local s = cjson.decode(h[i + 1])
            ev[#ev + 1] = {s[1], s[3], 1}
            ev[#ev + 1] = {s[2], s[3], -1}
            if s[4] == 1 then strength = 1 end
            if s[5] == 1 then balance = 1 end
            if s[6] > 0 then asteps = asteps + s[6] end
            if s[7] > 0 then adist = adist + s[7] end
        elseif kind == 'm:' then
            local m = cjson.decode(h[i + 1])
            mo = math.max(mo, m.mo)
            vi = math.max(vi, m.vi)
            li = math.max(li, m.li)
            ssteps = math.max(ssteps, m.st)
            sdist = math.max(sdist, m.di)
        end
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

-- fit_activity_put: store one session, idempotent by client_id.
-- KEYS: activity key, then (day key, week key) per local day touched.
-- ARGV: client_id, doc, n, then (date, segment JSON) per day.
-- Returns {"created"|"duplicate"|"conflict", weeks...}.
local function activity_put(keys, args)
    local akey, cid, doc, n = keys[1], args[1], args[2], tonumber(args[3])
    local existing = redis.call('HGET', akey, 'doc')
    if existing then
        if existing == doc then return {'duplicate'} end
        return {'conflict'}
    end
    local dates, weeks = {}, {'created'}
    for i = 1, n do
        local dkey, wkey = keys[2 * i], keys[2 * i + 1]
        local date, seg = args[3 + 2 * i - 1], args[3 + 2 * i]
        redis.call('HSET', dkey, 's:' .. cid, seg)
        recompute_day(dkey, wkey, date)
        dates[#dates + 1] = date
        weeks[#weeks + 1] = string.match(wkey, ':w:(.*)$')
    end
    redis.call('HSET', akey, 'doc', doc, 'rev', 1, 'days', table.concat(dates, ','))
    return weeks
end

-- fit_summary_put: upsert one daily summary; the newest recorded_at wins
-- whatever the arrival order (equal recorded_at: the larger document wins,
-- so every replica of a conflicting pair ends in the same state).
-- KEYS: day key, week key. ARGV: source, recorded_at_ms, doc, date, mo, vi, li, steps, distance.
-- Returns "applied" | "duplicate" | "stale".
local function summary_put(keys, args)
    local dkey, wkey = keys[1], keys[2]
    local field = 'm:' .. args[1]
    local rec, doc = tonumber(args[2]), args[3]
    local cur = redis.call('HGET', dkey, field)
    if cur then
        local c = cjson.decode(cur)
        if c.r > rec then return 'stale' end
        if c.r == rec then
            if c.doc == doc then return 'duplicate' end
            if c.doc > doc then return 'stale' end
        end
    end
    local m = {
        r = rec, doc = doc,
        mo = tonumber(args[5]), vi = tonumber(args[6]), li = tonumber(args[7]),
        st = tonumber(args[8]), di = tonumber(args[9]),
    }
    redis.call('HSET', dkey, field, cjson.encode(m))
    recompute_day(dkey, wkey, args[4])
    return 'applied'
end

-- fit_profile_set: set (or, for an empty value, remove) profile fields.
-- KEYS: profile key. ARGV: field, value, ... Returns the whole profile.
local function profile_set(keys, args)
    for i = 1, #args, 2 do
        if args[i + 1] == '' then
            redis.call('HDEL', keys[1], args[i])
        else
            redis.call('HSET', keys[1], args[i], args[i + 1])
        end
    end
    return redis.call('HGETALL', keys[1])
end

-- fit_week_get: a week's day totals and the profile that sets its band.
-- KEYS: week key, profile key. Returns {week hash, profile hash} as flat arrays.
local function week_get(keys, args)
    return {redis.call('HGETALL', keys[1]), redis.call('HGETALL', keys[2])}
end

redis.register_function('fit_activity_put', activity_put)
redis.register_function('fit_summary_put', summary_put)
redis.register_function('fit_profile_set', profile_set)
redis.register_function{function_name = 'fit_week_get', callback = week_get,
                        flags = {'no-writes'}}

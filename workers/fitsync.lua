--[[
The members' part of fitsync's Redis Functions library (after common.lua,
before events.lua; tools/embed.cmake joins them and fitsyncd loads the result
with FUNCTION LOAD REPLACE on every (re)connect). Every mutation is one atomic
call here (DESIGN.md decision 2), so dedup, the day's aggregate, the week, the
indexes and the change log change together or not at all.

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

Leaderboards (one shard's part of each board; reads merge the shards):

  fit:{sN}:lb:<week>:<scope>  zset  user -> equivalent minutes x 2^36 + (2^36 - 1 - t),
                                    t = milliseconds from the week's start (less 2^30) to
                                    when the score was reached, so equal scores rank who
                                    reached them first; exact in a double below 65,536 min
  fit:{sN}:lbnames            hash  user -> display name

Scopes: all, district:<slug>, age:<band>, team:<slug>. A member's entries
change in the same call as the week they score, and every changed board is
announced on the pub/sub channel "fit:lb" (one board name per line, like
"week:2026-W10:district:wan-chai") so that every fitsyncd pushes it.

Mutations take ARGV[1] = the device id and ARGV[2] = a context object
{w: change log window ms, b: age bands "id:min:max,...", t: board TTL ms,
mw: the oldest week whose boards are kept}.

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

local function minutes(ms)
    return math.floor(ms / 60000 + 0.5)
end

-- Recomputes one local day from every segment and summary it holds, and
-- writes (or removes) its totals in the week hash.
-- Today's active members (staff statistics): a per-shard count per local date
-- of members with any MVPA minute that day, kept as days change.
local function day_active_changed(P, date, was, is)
    if was == is then return end
    local key = string.match(P, '^(fit:{[^}]*}:)') .. 'sd:' .. date
    redis.call('HINCRBY', key, 'active', is and 1 or -1)
    redis.call('EXPIRE', key, 8 * 86400)
end

local function day_is_active(json)
    if not json then return false end
    local d = cjson.decode(json)
    return d.mo + d.vi > 0
end

local function recompute_day(P, date, week)
    local dkey, wkey = P .. 'd:' .. date, P .. 'w:' .. week
    local was_active = day_is_active(redis.call('HGET', wkey, date))
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
        day_active_changed(P, date, was_active, false)
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
    day_active_changed(P, date, was_active, day.mo + day.vi > 0)
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

-- ---- leaderboards ----

local TIE_OFFSET = 1073741824 -- 2^30 ms (12 days): a write slightly early stays positive

-- Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil, as protocol/fit_time.c).
local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
    return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- UTC ms of 00:00 on the Monday of ISO week "YYYY-Www" (Jan 4 is always in week 1).
local function week_start_ms(week)
    local jan4 = days_from_civil(tonumber(string.sub(week, 1, 4)), 1, 4)
    local monday = jan4 - (jan4 + 3) % 7
    return (monday + (tonumber(string.sub(week, 7, 8)) - 1) * 7) * 86400000
end

local function user_of(P)
    return string.match(P, ':u:(.*)/$')
end

local function age_band(bands, week, birth_year)
    if not birth_year then return nil end
    local age = tonumber(string.sub(week, 1, 4)) - birth_year
    for id, lo, hi in string.gmatch(bands, '([^:,]+):(%d+):(%d*)') do
        if age >= tonumber(lo) and (hi == '' or age <= tonumber(hi)) then return id end
    end
    return nil
end

-- The boards a member's week appears on ({} if they left the boards).
local function scopes(P, week, ctx)
    local p = redis.call('HMGET', P .. 'p', 'district', 'team', 'birth_year', 'boards')
    if p[4] == '0' then return {} end
    local s = {'all'}
    if p[1] then s[#s + 1] = 'district:' .. p[1] end
    if p[2] then s[#s + 1] = 'team:' .. p[2] end
    local band = age_band(ctx.b, week, tonumber(p[3]))
    if band then s[#s + 1] = 'age:' .. band end
    return s
end

local function week_equiv(P, week)
    local e = 0
    for _, v in ipairs(redis.call('HVALS', P .. 'w:' .. week)) do
        local d = cjson.decode(v)
        e = e + d.mo + 2 * d.vi
    end
    return e
end

local function board_key(P, week, scope)
    return shard_of(P) .. 'lb:' .. week .. ':' .. scope
end

local function set_entry(key, score, user, ctx)
    redis.call('ZADD', key, score, user)
    redis.call('PEXPIRE', key, ctx.t)
end

-- Puts the member's week score on each of their boards (or takes it off at 0).
-- The tie-break time changes only when the score does.
local function update_boards(P, week, ctx, touched)
    if week < ctx.mw then return end
    local user = user_of(P)
    local eq = week_equiv(P, week)
    local now = nil
    for _, sc in ipairs(scopes(P, week, ctx)) do
        local key = board_key(P, week, sc)
        local cur = redis.call('ZSCORE', key, user)
        if eq <= 0 then
            if cur then
                redis.call('ZREM', key, user)
                touched[#touched + 1] = 'week:' .. week .. ':' .. sc
            end
        elseif not cur or math.floor(tonumber(cur) / TIE) ~= eq then
            if not now then
                now = now_ms() - week_start_ms(week) + TIE_OFFSET
                now = math.max(0, math.min(TIE - 1, now))
            end
            set_entry(key, eq * TIE + (TIE - 1 - now), user, ctx)
            touched[#touched + 1] = 'week:' .. week .. ':' .. sc
        end
    end
end

-- The distinct weeks of day lists ([[date, week], ...]).
local function weeks_of(...)
    local seen, r = {}, {}
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

-- ---- virtual challenges (the member's side) ----
--
-- A member who joins a challenge gets its definition copied to their shard:
--   P.."ch"   hash  event -> {from, to (local dates), fm, tm (UTC ms), metric,
--                             types, goal, team, cap, name}
--   P.."chp"  hash  event -> {p: progress, c: contribution to the team (capped)}
--   P.."ach"  hash  event -> UTC ms the goal was reached (achievements stay)
-- and the challenge's boards live on each shard, merged on read:
--   fit:{sN}:ch:<event>/all    zset  user -> progress
--   fit:{sN}:ch:<event>/teams  zset  team -> sum of its members' capped progress
-- Progress is recomputed from the member's data in the window after every
-- change, in the same call, so edits and deletes un-count exactly.

-- Civil date of a day number (the inverse of days_from_civil, H. Hinnant).
local function civil_from_days(z)
    z = z + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local m = mp < 10 and mp + 3 or mp - 9
    return yoe + era * 400 + (m <= 2 and 1 or 0)
end

-- "YYYY-Www" of a local date "YYYY-MM-DD" (ISO 8601: the week of its Thursday).
local function iso_week_of(date)
    local days = days_from_civil(tonumber(string.sub(date, 1, 4)), tonumber(string.sub(date, 6, 7)),
                                 tonumber(string.sub(date, 9, 10)))
    local thursday = days - (days + 3) % 7 + 3
    local year = civil_from_days(thursday)
    local week = math.floor((thursday - days_from_civil(year, 1, 1)) / 7) + 1
    return string.format('%04d-W%02d', year, week)
end

local function challenge_progress(P, def)
    local total = 0
    if def.metric == 'distance_m' then
        local types = {}
        for _, t in ipairs(def.types or {}) do types[t] = true end
        for _, cid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'acts', def.fm, def.tm)) do
            local a = redis.call('HMGET', P .. 'a:' .. cid, 'doc', 'del')
            if a[1] and a[2] ~= '1' then
                local d = cjson.decode(a[1])
                if types[d.type] and type(d.distance_m) == 'number' then total = total + d.distance_m end
            end
        end
        return total
    end
    for _, date in ipairs(redis.call('SMEMBERS', P .. 'days')) do
        if date >= def.from and date <= def.to then
            local v = redis.call('HGET', P .. 'w:' .. iso_week_of(date), date)
            if v then
                local d = cjson.decode(v)
                if def.metric == 'active_days' then
                    if d.mo + d.vi > 0 then total = total + 1 end
                else
                    total = total + d.mo + 2 * d.vi
                end
            end
        end
    end
    return total
end

-- Recomputes the member's progress in every challenge they joined. With
-- refresh set (their profile changed), their board entries are rewritten even
-- if progress did not change: "boards": false keeps them off challenge boards
-- too (their progress still counts for their team, an aggregate).
local function challenges_after(P, touched, refresh)
    local ch = redis.call('HGETALL', P .. 'ch')
    if #ch == 0 then return end
    local user, S = user_of(P), shard_of(P)
    local listed = redis.call('HGET', P .. 'p', 'boards') ~= '0'
    for i = 1, #ch, 2 do
        local id, def = ch[i], cjson.decode(ch[i + 1])
        local st = cjson.decode(redis.call('HGET', P .. 'chp', id) or '{"p":0,"c":0}')
        local p = challenge_progress(P, def)
        if p ~= st.p or refresh then
            local c = p
            if def.cap and def.cap > 0 then c = math.min(p, def.cap) end
            if p > 0 and listed then
                redis.call('ZADD', S .. 'ch:' .. id .. '/all', p, user)
            else
                redis.call('ZREM', S .. 'ch:' .. id .. '/all', user)
            end
            touched[#touched + 1] = 'challenge:' .. id .. ':all'
            if def.team and def.team ~= '' and c ~= st.c then
                local tkey = S .. 'ch:' .. id .. '/teams'
                local t = tonumber(redis.call('ZINCRBY', tkey, c - st.c, def.team))
                -- A team back at nothing leaves the board, like one that never scored.
                if t <= 1e-9 then redis.call('ZREM', tkey, def.team) end
                touched[#touched + 1] = 'challenge:' .. id .. ':teams'
            end
            redis.call('HSET', P .. 'chp', id, cjson.encode({p = p, c = c}))
            if p >= def.goal and redis.call('HEXISTS', P .. 'ach', id) == 0 then
                local at = now_ms()
                redis.call('HSET', P .. 'ach', id, at)
                -- Through the per-member relay (origin 0: every process delivers it).
                local badge = cjson.encode({type = 'badge', event = id, name = def.name,
                                            metric = def.metric, goal = def.goal, progress = p, at_ms = at})
                redis.call('PUBLISH', 'fit:dev', '0000000000000000\n' .. user .. '\n' .. badge)
            end
        end
    end
end

-- ---- staff statistics (aggregates only) ----
--
-- Per shard and ISO week, fit:{sN}:st:<week> holds sums over members, field
-- "<segment>|<figure>": segments all, d:<district>, a:<age band>, g:<gender>;
-- figures a (active: any MVPA), am (aerobic target met), gm (whole guideline
-- met), n (sessions), mo, vi, eq (minutes). Each member's last contribution
-- to a week is kept in P.."sc" (week -> {c, s}), so a change subtracts the old
-- contribution and adds the new one: the sums always equal the members' data.
-- The WHO 2020 rules here mirror protocol/fit_who.c (the targets come in ctx.who
-- from config/who.json); a test compares the two.

local STAT_FIGURES = {'a', 'am', 'gm', 'n', 'mo', 'vi', 'eq'}

local function who_band(who, birth_year, pregnant, year)
    if pregnant then return who.pregnancy end
    if not birth_year then return who.adults end
    local age = year - birth_year
    if age < who.children.min_age then return who.children end
    for _, b in ipairs({who.children, who.adults, who.older_adults}) do
        if age >= b.min_age and (b.max_age < 0 or age <= b.max_age) then return b end
    end
    return who.adults
end

local function week_contribution(P, week, ctx)
    local c = {a = 0, am = 0, gm = 0, n = 0, mo = 0, vi = 0, eq = 0}
    local vd, sd, bd = 0, 0, 0
    local sessions = {}
    local h = redis.call('HGETALL', P .. 'w:' .. week)
    for i = 1, #h, 2 do
        local d = cjson.decode(h[i + 1])
        c.mo, c.vi = c.mo + d.mo, c.vi + d.vi
        if d.vi > 0 then vd = vd + 1 end
        if d.sg == 1 then sd = sd + 1 end
        if d.ba == 1 then bd = bd + 1 end
        for _, f in ipairs(redis.call('HKEYS', P .. 'd:' .. h[i])) do
            if string.sub(f, 1, 2) == 's:' then sessions[f] = true end
        end
    end
    for _ in pairs(sessions) do c.n = c.n + 1 end
    c.eq = c.mo + 2 * c.vi
    if c.mo + c.vi > 0 then c.a = 1 end
    local p = redis.call('HMGET', P .. 'p', 'birth_year', 'pregnant', 'district', 'gender')
    local band = who_band(ctx.who, tonumber(p[1]), p[2] == '1', tonumber(string.sub(week, 1, 4)))
    local figure = band.measure == 'mvpa' and (c.mo + c.vi) or c.eq
    if figure >= band.aerobic_min then c.am = 1 end
    if c.am == 1 and vd >= band.vigorous_days and sd >= band.strength_days and bd >= band.balance_days then
        c.gm = 1
    end
    local segs = {'all'}
    if p[3] then segs[#segs + 1] = 'd:' .. p[3] end
    local ab = age_band(ctx.b, week, tonumber(p[1]))
    if ab then segs[#segs + 1] = 'a:' .. ab end
    if p[4] then segs[#segs + 1] = 'g:' .. p[4] end
    return c, segs
end

local function stats_apply(S, week, c, segs, sign)
    local key = S .. 'st:' .. week
    for _, seg in ipairs(segs) do
        for _, f in ipairs(STAT_FIGURES) do
            if c[f] ~= 0 then redis.call('HINCRBY', key, seg .. '|' .. f, sign * c[f]) end
        end
    end
end

-- Replaces the member's contribution to a week's statistics.
local function stats_week(P, week, ctx)
    local S = shard_of(P)
    local old = redis.call('HGET', P .. 'sc', week)
    if old then
        old = cjson.decode(old)
        stats_apply(S, week, old.c, old.s, -1)
    end
    local c, segs = week_contribution(P, week, ctx)
    if c.a == 0 and c.n == 0 then
        redis.call('HDEL', P .. 'sc', week)
    else
        stats_apply(S, week, c, segs, 1)
        redis.call('HSET', P .. 'sc', week, cjson.encode({c = c, s = segs}))
    end
end

-- Programme totals since launch (per shard): members, activities, events,
-- participations, laps.
local function total(S, field, delta)
    redis.call('HINCRBY', S .. 'tot', field, delta)
end

local function member_seen(P)
    if redis.call('SETNX', P .. 'since', now_ms()) == 1 then total(shard_of(P), 'members', 1) end
end

local function upload_counted(P)
    local key = shard_of(P) .. 'upm:' .. math.floor(now_ms() / 60000)
    redis.call('INCR', key)
    redis.call('EXPIRE', key, 7200)
end

-- After a change to weeks: re-rank the member on their boards and challenges,
-- update the statistics, and announce the boards.
local function boards_after(P, ctx, weeks)
    local touched = {}
    for _, w in ipairs(weeks) do
        update_boards(P, w, ctx, touched)
        stats_week(P, w, ctx)
    end
    challenges_after(P, touched)
    publish(touched)
end

-- fit_challenge_join: KEYS: the member's log key. ARGV: event id, definition JSON.
-- Returns {"joined" | "duplicate", progress JSON, achieved at ms or '', the team joined}.
local function challenge_join(keys, args)
    local P = prefix_of(keys[1])
    local status = 'joined'
    if redis.call('HEXISTS', P .. 'ch', args[1]) == 1 then status = 'duplicate' end
    if status == 'joined' then
        redis.call('HSET', P .. 'ch', args[1], args[2])
        total(shard_of(P), 'participations', 1)
        redis.call('HINCRBY', shard_of(P) .. 'chn', args[1], 1)
        local touched = {}
        challenges_after(P, touched)
        publish(touched)
    end
    return {status, redis.call('HGET', P .. 'chp', args[1]) or '{"p":0,"c":0}',
            redis.call('HGET', P .. 'ach', args[1]) or '',
            cjson.decode(redis.call('HGET', P .. 'ch', args[1])).team or ''}
end

-- fit_challenge_top (read-only): one shard's part of a challenge board.
-- KEYS: fit:{sN}:ch:<event>/all or /teams. ARGV: n (0 = every entry).
-- Returns {size, (member, score, name) x n}; names are display names for /all.
local function challenge_top(keys, args)
    local key, n = keys[1], tonumber(args[1])
    local r = {redis.call('ZCARD', key)}
    local top = redis.call('ZREVRANGE', key, 0, n - 1, 'WITHSCORES')
    local teams = string.sub(key, -6) == '/teams'
    for i = 1, #top, 2 do
        r[#r + 1] = top[i]
        r[#r + 1] = top[i + 1]
        r[#r + 1] = teams and top[i] or (redis.call('HGET', shard_of(key) .. 'lbnames', top[i]) or '')
    end
    return r
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

-- Appends weeks to reply r.
local function add_weeks(r, weeks)
    for _, w in ipairs(weeks) do r[#r + 1] = w end
    return r
end

-- fit_activity_put: store a new session, idempotent by client_id.
-- ARGV: device, ctx, client_id, doc, start_ms, n, then (date, week, segment) x n.
-- Returns {"created", rev, cursor, weeks...} | {"duplicate", rev} | {"deleted", rev}
--       | {"conflict", rev, doc}.
local function activity_put(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, cid, doc = args[1], cjson.decode(args[2]), args[3], args[4]
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
    local cursor = log_change(P, ctx.w, 'activity', 'upsert', cid, 1, doc, device)
    member_seen(P)
    total(shard_of(P), 'activities', 1)
    upload_counted(P)
    local weeks = weeks_of(days)
    boards_after(P, ctx, weeks)
    return add_weeks({'created', 1, cursor}, weeks)
end

-- fit_activity_update: replace a session's content if base_rev is current.
-- ARGV: device, ctx, client_id, base_rev, doc, start_ms, n, then (date, week, segment) x n.
-- Returns {"updated", rev, cursor, weeks...} | {"duplicate", rev} | {"not_found"}
--       | {"conflict", rev, doc, deleted}.
local function activity_update(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, cid = args[1], cjson.decode(args[2]), args[3]
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
    local cursor = log_change(P, ctx.w, 'activity', 'upsert', cid, rev, doc, device)
    local weeks = weeks_of(old, days)
    boards_after(P, ctx, weeks)
    return add_weeks({'updated', rev, cursor}, weeks)
end

-- fit_activity_delete: turn a session into a tombstone and recompute its days.
-- ARGV: device, ctx, client_id, base_rev ("" = unconditional).
-- Returns {"deleted", rev, cursor, weeks...} | {"duplicate", rev} | {"not_found"}
--       | {"conflict", rev, doc}.
local function activity_delete(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, cid = args[1], cjson.decode(args[2]), args[3]
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
    local cursor = log_change(P, ctx.w, 'activity', 'delete', cid, rev, nil, device)
    total(shard_of(P), 'activities', -1)
    local weeks = weeks_of(old)
    boards_after(P, ctx, weeks)
    return add_weeks({'deleted', rev, cursor}, weeks)
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
-- ARGV: device, ctx, date, week, source, recorded_at_ms, doc, mo, vi, li,
--       steps, distance, day_ms.
-- Returns {"applied", cursor, week} | {"duplicate"} | {"stale"}.
local function summary_put(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, date, week, source = args[1], cjson.decode(args[2]), args[3], args[4], args[5]
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
    local cursor = log_change(P, ctx.w, 'summary', 'upsert', date .. '|' .. source, 1, doc, device)
    member_seen(P)
    upload_counted(P)
    boards_after(P, ctx, {week})
    return {'applied', cursor, week}
end

-- fit_summary_delete: remove a day's summary from one source.
-- ARGV: device, ctx, date, week, source.
-- Returns {"deleted", cursor, week} | {"duplicate"} | {"not_found"}.
local function summary_delete(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, date, week, source = args[1], cjson.decode(args[2]), args[3], args[4], args[5]
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
    local cursor = log_change(P, ctx.w, 'summary', 'delete', date .. '|' .. source, 1, nil, device)
    boards_after(P, ctx, {week})
    return {'deleted', cursor, week}
end

-- fit_profile_set: set (or, for an empty value, remove) profile fields.
-- A member's boards follow their profile: a new district, team, birth year,
-- name or "boards" flag moves (or removes) their entries on every kept week,
-- keeping their score and its tie-break time.
-- ARGV: device, ctx, then field, value, ...
-- Returns {cursor, {field, value, ...}} (the whole profile after the change).
local function profile_set(keys, args)
    local P = prefix_of(keys[1])
    local ctx = cjson.decode(args[2])
    local user = user_of(P)
    local weeks, before = {}, {}
    for _, w in ipairs(redis.call('SMEMBERS', P .. 'wks')) do
        if w >= ctx.mw then
            weeks[#weeks + 1] = w
            before[w] = {scopes(P, w, ctx), redis.call('ZSCORE', board_key(P, w, 'all'), user)}
        end
    end
    for i = 3, #args, 2 do
        if args[i + 1] == '' then
            redis.call('HDEL', P .. 'p', args[i])
        else
            redis.call('HSET', P .. 'p', args[i], args[i + 1])
        end
    end
    local name = redis.call('HGET', P .. 'p', 'display_name')
    if name then
        redis.call('HSET', shard_of(P) .. 'lbnames', user, name)
    else
        redis.call('HDEL', shard_of(P) .. 'lbnames', user)
    end
    local touched = {}
    for _, w in ipairs(weeks) do
        local old_scopes, score = before[w][1], before[w][2]
        local new_scopes = scopes(P, w, ctx)
        local keep = {}
        for _, sc in ipairs(new_scopes) do keep[sc] = true end
        for _, sc in ipairs(old_scopes) do
            if not keep[sc] then
                redis.call('ZREM', board_key(P, w, sc), user)
                touched[#touched + 1] = 'week:' .. w .. ':' .. sc
            end
        end
        if score then
            for _, sc in ipairs(new_scopes) do
                set_entry(board_key(P, w, sc), score, user, ctx)
                touched[#touched + 1] = 'week:' .. w .. ':' .. sc
            end
        else
            update_boards(P, w, ctx, touched)
        end
    end
    -- Statistics follow the profile too (district, gender, band), for every week counted,
    -- and so do challenge boards (the "boards" flag, the name).
    for _, w in ipairs(redis.call('HKEYS', P .. 'sc')) do stats_week(P, w, ctx) end
    challenges_after(P, touched, true)
    member_seen(P)
    publish(touched)
    local h = redis.call('HGETALL', P .. 'p')
    local obj = {}
    for i = 1, #h, 2 do obj[h[i]] = h[i + 1] end
    local doc = cjson.encode(obj)
    local cursor = log_change(P, ctx.w, 'profile', 'upsert', 'profile', 1, doc, args[1])
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
        -- Entries were dropped (trimmed to the window) when more were ever added
        -- than the log holds; they were the oldest, so a cursor before the first
        -- kept entry may have missed some.
        local info = redis.call('XINFO', 'STREAM', P .. 'log')
        local f = {}
        for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
        local first = f['first-entry'] and f['first-entry'][1]
        if tonumber(f['entries-added']) > tonumber(f['length']) and first and id_less(cursor, first) then
            return {'resync_required'}
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
    local ctx = cjson.decode(args[1])
    local user = user_of(P)
    local n = 0
    local function del(k) n = n + redis.call('DEL', k) end
    local touched = {}
    for _, w in ipairs(redis.call('SMEMBERS', P .. 'wks')) do
        if w >= ctx.mw then
            for _, sc in ipairs(scopes(P, w, ctx)) do
                n = n + redis.call('ZREM', board_key(P, w, sc), user)
                touched[#touched + 1] = 'week:' .. w .. ':' .. sc
            end
        end
    end
    n = n + redis.call('HDEL', shard_of(P) .. 'lbnames', user)
    local ch = redis.call('HGETALL', P .. 'ch')
    for i = 1, #ch, 2 do
        local id, def = ch[i], cjson.decode(ch[i + 1])
        local st = cjson.decode(redis.call('HGET', P .. 'chp', id) or '{"p":0,"c":0}')
        n = n + redis.call('ZREM', shard_of(P) .. 'ch:' .. id .. '/all', user)
        if def.team and def.team ~= '' and st.c ~= 0 then
            redis.call('ZINCRBY', shard_of(P) .. 'ch:' .. id .. '/teams', -st.c, def.team)
        end
        touched[#touched + 1] = 'challenge:' .. id .. ':all'
        touched[#touched + 1] = 'challenge:' .. id .. ':teams'
    end
    for _, k in ipairs({'ch', 'chp', 'ach'}) do del(P .. k) end
    -- Aggregates: the member's contributions leave the statistics, too.
    local S = shard_of(P)
    local sc = redis.call('HGETALL', P .. 'sc')
    for i = 1, #sc, 2 do
        local old = cjson.decode(sc[i + 1])
        stats_apply(S, sc[i], old.c, old.s, -1)
    end
    for _, d in ipairs(redis.call('SMEMBERS', P .. 'days')) do
        if day_is_active(redis.call('HGET', P .. 'w:' .. iso_week_of(d), d)) then
            day_active_changed(P, d, true, false)
        end
    end
    if redis.call('EXISTS', P .. 'since') == 1 then total(S, 'members', -1) end
    local live = 0
    for _, cid in ipairs(redis.call('ZRANGE', P .. 'acts', 0, -1)) do
        if redis.call('HGET', P .. 'a:' .. cid, 'del') ~= '1' then live = live + 1 end
    end
    total(S, 'activities', -live)
    for i = 1, #ch, 2 do redis.call('HINCRBY', S .. 'chn', ch[i], -1) end
    for _, k in ipairs({'sc', 'since'}) do del(P .. k) end
    publish(touched)
    for _, cid in ipairs(redis.call('ZRANGE', P .. 'acts', 0, -1)) do del(P .. 'a:' .. cid) end
    for _, d in ipairs(redis.call('SMEMBERS', P .. 'days')) do del(P .. 'd:' .. d) end
    for _, w in ipairs(redis.call('SMEMBERS', P .. 'wks')) do del(P .. 'w:' .. w) end
    for _, k in ipairs({'p', 'log', 'acts', 'sums', 'days', 'wks'}) do del(P .. k) end
    return n
end

-- fit_board_top: one shard's top n of a board, with display names.
-- KEYS: the board key on this shard. ARGV: n.
-- Returns {size, user, score, name, user, score, name, ...} (score as stored).
local function board_top(keys, args)
    local key = keys[1]
    local r = {redis.call('ZCARD', key)}
    local top = redis.call('ZREVRANGE', key, 0, tonumber(args[1]) - 1, 'WITHSCORES')
    if #top == 0 then return r end
    local users = {}
    for i = 1, #top, 2 do users[#users + 1] = top[i] end
    local names = redis.call('HMGET', shard_of(key) .. 'lbnames', unpack(users))
    for i = 1, #users do
        r[#r + 1] = users[i]
        r[#r + 1] = top[2 * i]
        r[#r + 1] = names[i] or ''
    end
    return r
end

-- fit_board_around: one shard's part of a rank lookup.
-- KEYS: the board key on this shard. ARGV: score ('' = look up user's), user, k.
-- Returns {score or '', entries above it, size, nabove, user's name or '',
--          (user, score, name) x nabove nearest first, then the same below}.
local function board_around(keys, args)
    local key, score, k = keys[1], args[1], tonumber(args[3])
    local name = ''
    if score == '' then
        score = redis.call('ZSCORE', key, args[2])
        if not score then return {'', 0, redis.call('ZCARD', key), 0, ''} end
        name = redis.call('HGET', shard_of(key) .. 'lbnames', args[2]) or ''
    end
    local above = redis.call('ZRANGEBYSCORE', key, '(' .. score, '+inf', 'WITHSCORES', 'LIMIT', 0, k)
    local below = redis.call('ZREVRANGEBYSCORE', key, '(' .. score, '-inf', 'WITHSCORES', 'LIMIT', 0, k)
    local r = {score, redis.call('ZCOUNT', key, '(' .. score, '+inf'), redis.call('ZCARD', key),
               #above / 2, name}
    for _, list in ipairs({above, below}) do
        for i = 1, #list, 2 do
            r[#r + 1] = list[i]
            r[#r + 1] = list[i + 1]
            r[#r + 1] = redis.call('HGET', shard_of(key) .. 'lbnames', list[i]) or ''
        end
    end
    return r
end

-- fit_stats_read (read-only): one shard's part of the staff figures.
-- KEYS: fit:{sN}:tot. ARGV: today's date, the current minute (UTC ms / 60000),
-- then ISO weeks. Returns {totals (flat), today's active, uploads of the last 60
-- minutes (oldest first), events [(id, name, kind, state, teams, laps) ...],
-- challenge participants (flat), connected devices (flat, shard 0 only),
-- then one flat hash per week}.
local function stats_read(keys, args)
    local S = string.match(keys[1], '^(fit:{[^}]*}:)')
    local r = {redis.call('HGETALL', keys[1])}
    r[#r + 1] = redis.call('HGET', S .. 'sd:' .. args[1], 'active') or '0'
    local upm, minute = {}, tonumber(args[2])
    for i = 59, 0, -1 do upm[#upm + 1] = redis.call('GET', S .. 'upm:' .. (minute - i)) or '0' end
    r[#r + 1] = upm
    local events = {}
    for _, id in ipairs(redis.call('SMEMBERS', S .. 'events')) do
        local E = S .. 'e:' .. id .. '/'
        local m = redis.call('HMGET', E .. 'meta', 'doc', 'kind', 'state', 'laps')
        local name = m[1] and cjson.decode(m[1]).name or id
        events[#events + 1] = {id, name, m[2] or '', m[3] or '', redis.call('SCARD', E .. 'teams'),
                               m[4] or '0'}
    end
    r[#r + 1] = events
    r[#r + 1] = redis.call('HGETALL', S .. 'chn')
    r[#r + 1] = redis.call('HGETALL', S .. 'conns')
    for i = 3, #args do r[#r + 1] = redis.call('HGETALL', S .. 'st:' .. args[i]) end
    return r
end

redis.register_function('fit_activity_put', activity_put)
redis.register_function('fit_activity_update', activity_update)
redis.register_function('fit_activity_delete', activity_delete)
redis.register_function('fit_summary_put', summary_put)
redis.register_function('fit_summary_delete', summary_delete)
redis.register_function('fit_profile_set', profile_set)
redis.register_function('fit_account_delete', account_delete)
redis.register_function('fit_challenge_join', challenge_join)
local ro = {'no-writes'}
redis.register_function{function_name = 'fit_activity_get', callback = activity_get, flags = ro}
redis.register_function{function_name = 'fit_weeks_get', callback = weeks_get, flags = ro}
redis.register_function{function_name = 'fit_sync_pull', callback = sync_pull, flags = ro}
redis.register_function{function_name = 'fit_sync_head', callback = sync_head, flags = ro}
redis.register_function{function_name = 'fit_state', callback = state, flags = ro}
redis.register_function{function_name = 'fit_board_top', callback = board_top, flags = ro}
redis.register_function{function_name = 'fit_board_around', callback = board_around, flags = ro}
redis.register_function{function_name = 'fit_challenge_top', callback = challenge_top, flags = ro}
redis.register_function{function_name = 'fit_stats_read', callback = stats_read, flags = ro}

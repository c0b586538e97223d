--[[
The members' part of fitsync's Redis Functions library (after common.lua,
before events.lua; tools/embed.cmake joins them and fitsyncd loads the result
with FUNCTION LOAD REPLACE on every (re)connect). Every mutation is one atomic
call here (DESIGN.md decision 2), so dedup, the day's aggregate, the week, the
indexes and the change log change together or not at all.

Cost (DESIGN.md, "Cost per unit of work"): a mutation reads and writes only
the days it touches. A day's sessions and summaries live in one field, read
with the day's totals and its week's running figures in one HMGET and written
back in one HSET; the week's figures (minutes, the days with vigorous,
strength and balance activity, the session count), its board score and its
staff-figure contribution are kept incrementally from the day's old and new
totals, so nothing is rescanned. Challenge progress moves by the same per-day
(and per-session, for distance) deltas, only for challenges whose window holds
a changed date. Shared per-shard figures are read and written back once per
call (HMGET + HSET), not one HINCRBY per figure.

Every call names one key, the user's change log, and derives the user's other
keys from it: they share its prefix and so its shard tag {sN} and its cluster
slot (DESIGN.md decision 3). With P = "fit:{sN}:u:<user>/" (user ids may hold
':' but never '/', so one user's keys can never be spelled as another's):

  P.."log"        stream  the change log: one entry per upsert or delete
  P.."m"          hash    the member: profile fields by name; internal "_s"
                          (first seen, UTC ms) and "_ch" (challenges joined,
                          MessagePack), never returned as profile; and per session
                          ":"<client_id> -> "rev|del|start_ms|dates|doc" (del 1
                          = tombstone, doc dropped; dates = its local dates,
                          comma separated; doc as sent). One hash, so one
                          HMGET reads the profile and checks the client_id.
  P.."w:"<week>   hash    one ISO week; a day's fields are named by its weekday
                          D, "0" (Monday) to "6" (Sunday):
                            D           the day's totals "mo,vi,li,st,di,sg,ba"
                                        (minutes, steps, metres, strength and
                                        balance 0/1): what fit_weeks_get reads
                            "x"D        the day's items, packed (items_pack): its
                                        sessions' segments, its summaries'
                                        figures, tombstones
                            "d"D"|"<source>  a summary as sent
                            "k"D        sessions folded away (fit_fold)
                            "t"         running figures "mo,vi,vd,sd,bd,n": minutes,
                                        days with vigorous / strength / balance
                                        activity, sessions (one crossing midnight
                                        counts once per week it touches)
                            "c"         the week's staff-figure contribution
                                        "a,am,gm,n,mo,vi,eq;segment;..."
                            "b"         the member's score on the week's boards
  P.."wks"        zset    ISO week -> yyyyww: every week the user has data in

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
mw: the oldest week whose boards are kept, n: the caller's clock (UTC ms),
who: the WHO targets}.

A segment is [start_ms, end_ms, level, strength, balance, steps, distance_m]
with times in UTC milliseconds and level 1 light, 2 moderate, 3 vigorous.

The day rule (DESIGN.md, WHO 2020 rules): the sessions of a day count as
their union, and where sessions of different intensity overlap the higher
wins; the day's summaries and its sessions combine per intensity as the
larger of the two, never the sum. Minutes are rounded once per day and
intensity, half up. A changed day is recomputed from everything it holds
(one field), and the week moves by the day's new totals less its old ones,
so deletes and edits leave totals exactly what the surviving data says.

Revisions: a session starts at rev 1; each update or delete adds 1. An
update or delete names the rev it was based on; if another change came
first, the call answers "conflict" with the current item, and nothing is
lost or overwritten silently. Re-sending a change that was already applied
answers "duplicate".
--]]

local function prefix_of(logkey)
    return string.sub(logkey, 1, -4)
end

local function user_of(P)
    return string.match(P, ':u:(.*)/$')
end

local function minutes(ms)
    return math.floor(ms / 60000 + 0.5)
end

-- A number as Redis and the C side read it back: integers without a fraction.
local function num(x)
    if x == math.floor(x) and math.abs(x) < 1e15 then return string.format('%d', x) end
    return string.format('%.17g', x)
end

-- ---- dates (H. Hinnant's civil algorithms, as protocol/fit_time.c) ----

local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
    return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

local function civil_from_days(z)
    z = z + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local d = doy - math.floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    return yoe + era * 400 + (m <= 2 and 1 or 0), m, d
end

local function day_number(date)
    return days_from_civil(tonumber(string.sub(date, 1, 4)), tonumber(string.sub(date, 6, 7)),
                           tonumber(string.sub(date, 9, 10)))
end

local function date_of(n)
    return string.format('%04d-%02d-%02d', civil_from_days(n))
end

-- "YYYY-Www" of a local date "YYYY-MM-DD" (ISO 8601: the week of its Thursday).
local function iso_week_of(date)
    local days = day_number(date)
    local thursday = days - (days + 3) % 7 + 3
    local year = civil_from_days(thursday)
    local week = math.floor((thursday - days_from_civil(year, 1, 1)) / 7) + 1
    return string.format('%04d-W%02d', year, week)
end

-- Day number of the Monday of ISO week "YYYY-Www" (Jan 4 is always in week 1).
local function week_monday(week)
    local jan4 = days_from_civil(tonumber(string.sub(week, 1, 4)), 1, 4)
    return jan4 - (jan4 + 3) % 7 + (tonumber(string.sub(week, 7, 8)) - 1) * 7
end

-- UTC ms of 00:00 on the Monday of an ISO week.
local function week_start_ms(week)
    return week_monday(week) * 86400000
end

local function week_dates(week)
    local m, r = week_monday(week), {}
    for i = 0, 6 do r[#r + 1] = date_of(m + i) end
    return r
end

-- A date's field name in its week hash: the weekday, "0" (Monday) to "6".
local function wd(date)
    return tostring((day_number(date) + 3) % 7)
end

local WEEKDAYS = {'0', '1', '2', '3', '4', '5', '6'}

-- UTC ms of an RFC 3339 time as protocol/fit_time.c writes and accepts it.
local function rfc3339_ms(s)
    local y, mo, d, h, mi, sec, frac, zone =
        string.match(s, '^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)(%.?%d*)(.*)$')
    if not y then return nil end
    local ms = ((days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000
               + tonumber(sec) * 1000
    if frac ~= '' and frac ~= '.' then ms = ms + math.floor(tonumber('0' .. frac) * 1000 + 0.5) end
    local sign, zh, zm = string.match(zone, '^([+-])(%d+):(%d+)$')
    if sign then
        local off = (tonumber(zh) * 60 + tonumber(zm)) * 60000
        ms = ms - (sign == '+' and off or -off)
    end
    return ms
end

-- yyyyww: the order of ISO weeks as a number (the score in P.."wks").
local function week_index(week)
    return tonumber(string.sub(week, 1, 4)) * 100 + tonumber(string.sub(week, 7, 8))
end

-- ---- packed records ----

local function day_parse(v)
    if not v then return nil end
    local f = {}
    for x in string.gmatch(v, '[^,]+') do f[#f + 1] = tonumber(x) end
    return {mo = f[1], vi = f[2], li = f[3], st = f[4], di = f[5], sg = f[6], ba = f[7]}
end

local function day_pack(d)
    return table.concat({d.mo, d.vi, d.li, num(d.st), num(d.di), d.sg, d.ba}, ',')
end

local function figures_parse(v)
    local f = {}
    for x in string.gmatch(v or '', '[^,]+') do f[#f + 1] = tonumber(x) end
    return {mo = f[1] or 0, vi = f[2] or 0, vd = f[3] or 0, sd = f[4] or 0, bd = f[5] or 0, n = f[6] or 0}
end

local function figures_pack(t)
    return table.concat({t.mo, t.vi, t.vd, t.sd, t.bd, t.n}, ',')
end

local STAT_FIGURES = {'a', 'am', 'gm', 'n', 'mo', 'vi', 'eq'}

local function contribution_parse(v)
    if not v then return nil end
    local parts = {}
    for x in string.gmatch(v, '[^;]+') do parts[#parts + 1] = x end
    local c, i = {}, 1
    for x in string.gmatch(parts[1], '[^,]+') do
        c[STAT_FIGURES[i]] = tonumber(x)
        i = i + 1
    end
    local segs = {}
    for j = 2, #parts do segs[#segs + 1] = parts[j] end
    return {c = c, s = segs}
end

local function contribution_pack(k)
    local f = {}
    for i, name in ipairs(STAT_FIGURES) do f[i] = k.c[name] end
    return table.concat(f, ',') .. ';' .. table.concat(k.s, ';')
end

-- A session record "rev|del|start_ms|dates|doc".
local function session_pack(rev, del, start, dates, doc)
    return table.concat({rev, del and '1' or '0', num(start), table.concat(dates, ','), doc or ''}, '|')
end

local function session_parse(v)
    local rev, del, start, dates, doc = string.match(v, '^(%d+)|(%d)|(%-?%d+)|([^|]*)|(.*)$')
    local d = {}
    for x in string.gmatch(dates, '[^,]+') do d[#d + 1] = x end
    return {rev = tonumber(rev), del = del == '1', start = tonumber(start), dates = d, doc = doc}
end

-- Client ids and sources are [A-Za-z0-9._:@-] (protocol/fit_activity.c): the
-- packed text records below use ',', ';' and '|' as separators.
local function split(v, sep)
    local r, i = {}, 1
    while true do
        local j = string.find(v, sep, i, true)
        if not j then
            r[#r + 1] = string.sub(v, i)
            return r
        end
        r[#r + 1] = string.sub(v, i, j - 1)
        i = j + 1
    end
end

-- A day's items, x<D>: MessagePack (cmsgpack, C code: cheaper to read and
-- write than any Lua parser) of {f = the sessions' segments, one string of
-- MessagePack values cid, start, end, level, strength, balance, steps, metres,
-- cid, ... (no table per session to build or walk; a new session is appended
-- to the string without re-encoding the others), m = {source -> summary
-- figures {r, mo, vi, li, st, di, dm}}, x = {source -> recorded_at of a deleted
-- summary}, d = {client ids of sessions deleted that started on the date, so
-- folding finds their tombstones}}. A segment's start and end are kept in ms
-- from the date's 00:00 UTC (small integers pack short); the day rule needs
-- only their differences.
-- Summaries are stored as arrays [r, mo, vi, li, st, di, dm], r and dm in ms
-- from the date's 00:00 UTC (date: "YYYY-MM-DD"). In Lua, x.f is the stored
-- flat array and x.s this call's edits: cid -> segment (added or replaced) or
-- false (removed).
local SEG = 8 -- values per session in x.f

-- Every value of a string of concatenated MessagePack values, as one array
-- (in chunks: a Lua call returns at most a few thousand values).
local function unpack_all(str)
    local r, off = {}, 0
    while off >= 0 and off < #str do
        local res = {cmsgpack.unpack_limit(str, 800, off)}
        off = res[1]
        for i = 2, #res do r[#r + 1] = res[i] end
    end
    return r
end

local function pack_all(list)
    local parts = {}
    for i = 1, #list, 800 do parts[#parts + 1] = cmsgpack.pack(unpack(list, i, math.min(#list, i + 799))) end
    return table.concat(parts)
end

local function items_parse(v, date)
    local x = v and cmsgpack.unpack(v) or {}
    x.fs = x.f or ''
    x.f, x.s, x.x = unpack_all(x.fs), {}, x.x or {}
    local base, m = day_number(date) * 86400000, {}
    for src, a in pairs(x.m or {}) do
        m[src] = {r = a[1] + base, mo = a[2], vi = a[3], li = a[4], st = a[5], di = a[6], dm = a[7] + base}
    end
    x.m = m
    local d = {}
    for _, cid in ipairs(x.d or {}) do d[cid] = true end
    x.d = d
    return x
end

-- Calls fn(cid, start, end, level, strength, balance, steps, metres) for every
-- session the day holds after this call's edits.
local function sessions_each(x, fn)
    local f = x.f
    for i = 1, #f, SEG do
        if x.s[f[i]] == nil then fn(f[i], f[i + 1], f[i + 2], f[i + 3], f[i + 4], f[i + 5], f[i + 6], f[i + 7]) end
    end
    for cid, g in pairs(x.s) do
        if g then fn(cid, g[1], g[2], g[3], g[4], g[5], g[6], g[7]) end
    end
end

local function has_sessions(x)
    for i = 1, #x.f, SEG do
        if x.s[x.f[i]] == nil then return true end
    end
    for _, g in pairs(x.s) do
        if g then return true end
    end
    return false
end

local function items_pack(x, date)
    local base, t = day_number(date) * 86400000, {}
    local f, n = {}, 0
    if not x.append then
        for i = 1, #x.f, SEG do
            if x.s[x.f[i]] == nil then
                for j = 0, SEG - 1 do f[n + 1 + j] = x.f[i + j] end
                n = n + SEG
            end
        end
    end
    for cid, g in pairs(x.s) do
        if g then
            f[n + 1] = cid
            for j = 1, SEG - 1 do f[n + 1 + j] = g[j] end
            n = n + SEG
        end
    end
    -- x.append: this call only added sessions new to the day (activity_put).
    local fs = (x.append and x.fs or '') .. pack_all(f)
    if fs ~= '' then t.f = fs end
    if next(x.m) then
        t.m = {}
        for src, c in pairs(x.m) do t.m[src] = {c.r - base, c.mo, c.vi, c.li, c.st, c.di, c.dm - base} end
    end
    if next(x.x) then t.x = x.x end
    local d = {}
    for cid in pairs(x.d) do d[#d + 1] = cid end
    if #d > 0 then t.d = d end
    return cmsgpack.pack(t)
end

-- A segment from ARGV ([start_ms, end_ms, ...], UTC) as stored for its date.
local function segment_of(seg, date)
    local base = day_number(date) * 86400000
    seg[1], seg[2] = seg[1] - base, seg[2] - base
    return seg
end

-- Folded sessions, k<date> (see fit_fold below).
local function folded_parse(v)
    local r = {}
    for _, e in ipairs(split(v, ';')) do
        local f = split(e, ',')
        if #f == 7 then
            r[#r + 1] = {cid = f[1], rev = tonumber(f[2]), type = f[3], start = rfc3339_ms(f[4]) or 0,
                         start_s = f[4], dur = f[5], steps = f[6], dist = f[7]}
        end
    end
    return r
end

-- A folded session as export gives it (docs/PROTOCOL.md, account.export).
local function folded_doc(k)
    local d = {client_id = k.cid, type = k.type, start = k.start_s, folded = true}
    if string.find(k.dur, 'T', 1, true) then d['end'] = k.dur else d.duration_s = tonumber(k.dur) end
    if k.steps ~= '' then d.steps = tonumber(k.steps) end
    if k.dist ~= '' then d.distance_m = tonumber(k.dist) end
    return cjson.encode(d)
end

local function folded_entry(cid, s)
    local d = cjson.decode(s.doc)
    local dur = ''
    if type(d.duration_s) == 'number' then
        dur = num(d.duration_s)
    elseif type(d['end']) == 'string' then
        dur = d['end']
    end
    return table.concat({cid, s.rev, type(d.type) == 'string' and d.type or '',
                         type(d.start) == 'string' and d.start or '', dur,
                         type(d.steps) == 'number' and num(d.steps) or '',
                         type(d.distance_m) == 'number' and num(d.distance_m) or ''}, ',')
end

-- The mutation context (ARGV[2]). Its "who" member, the WHO targets, is the
-- same text in every call of a fitsyncd and the costliest part to decode
-- (about 10 us): the decoded table is kept between calls, keyed by that text.
-- Only a pure function of the argument is cached, so replicas and the AOF
-- (which get the Function's effects) cannot differ.
local who_text, who_table
local function ctx_decode(s)
    local at = string.find(s, ',"who":', 1, true)
    if not at or string.sub(s, -1) ~= '}' then return cjson.decode(s) end
    local text = string.sub(s, at + 7, -2)
    if text ~= who_text then
        who_text, who_table = text, cjson.decode(text)
    end
    local ctx = cjson.decode(string.sub(s, 1, at - 1) .. '}')
    ctx.who = who_table
    return ctx
end

-- ---- the call's context: what one mutation reads once and writes once ----

local function call_new(P, ctx)
    return {P = P, S = shard_of(P), user = user_of(P), ctx = ctx, changes = {}, st = {},
            stw = {}, mark = {}, tot = {}, upm = false, pset = {}, touched = {}}
end

-- Appends one change to the log, trimming entries older than the window; the
-- entry id's milliseconds are Redis's clock, the call's "now".
-- Returns the new cursor (the stream entry id).
local function log_change(cx, kind, op, id, rev, doc, device)
    local clock = cx.ctx.n or now_ms()
    local minid = tostring(math.max(0, clock - cx.ctx.w))
    local fields = {'k', kind, 'op', op, 'id', id, 'rev', tostring(rev), 'dev', device}
    if doc then
        fields[#fields + 1] = 'doc'
        fields[#fields + 1] = doc
    end
    local cursor = redis.call('XADD', cx.P .. 'log', 'MINID', minid, '*', unpack(fields))
    cx.now = tonumber(string.match(cursor, '^(%d+)'))
    return cursor
end

-- The profile fields (server/fit_h_sync.c validates them; fit_ops_profile_set sends them).
local PROFILE_FIELDS = {'birth_year', 'district', 'gender', 'pregnant', 'display_name', 'team', 'boards'}
-- The member's challenges, field "_ch": MessagePack of an array of
-- [id, from, to, fm, tm, metric, progress, team contribution, achieved at ms (0:
-- not yet), definition JSON]. What every upload needs (the window, the metric,
-- the progress) unpacks in C; the definition (goal, cap, team, name, types) is
-- decoded only for a challenge a change falls into (challenge_def).
local function challenges_parse(v)
    if not v then return nil end
    local r = {}
    for _, e in ipairs(cmsgpack.unpack(v)) do
        r[e[1]] = {from = e[2], to = e[3], fm = e[4], tm = e[5], metric = e[6], p = e[7], c = e[8],
                   a = e[9] ~= 0 and e[9] or nil, dj = e[10]}
    end
    return r
end

local function challenges_pack(ch)
    local a = {}
    for id, r in pairs(ch) do a[#a + 1] = {id, r.from, r.to, r.fm, r.tm, r.metric, r.p, r.c, r.a or 0, r.dj} end
    return cmsgpack.pack(a)
end

local function challenge_def(rec)
    if not rec.d then rec.d = cjson.decode(rec.dj) end
    return rec.d
end

local PROFILE_READ = {'district', 'team', 'birth_year', 'boards', 'pregnant', 'gender', '_s', '_ch'}

-- Reads the profile fields that scopes, bands and challenges need, and with
-- cid the session record ":"<cid>, in one HMGET. Returns the record or nil.
local function profile_load(cx, cid)
    local f = {unpack(PROFILE_READ)}
    if cid then f[#f + 1] = ':' .. cid end
    local v = redis.call('HMGET', cx.P .. 'm', unpack(f))
    local p = {}
    for i, k in ipairs(PROFILE_READ) do p[k] = v[i] or nil end
    cx.prof = p
    cx.ch = challenges_parse(p._ch)
    return cid and v[#f] or nil
end

-- The profile as the member sees it, flat {field, value, ...}.
local function profile_flat(P)
    local v, r = redis.call('HMGET', P .. 'm', unpack(PROFILE_FIELDS)), {}
    for i, k in ipairs(PROFILE_FIELDS) do
        if v[i] then
            r[#r + 1] = k
            r[#r + 1] = v[i]
        end
    end
    return r
end

-- Every session record {cid, parsed record} of the member (export, join, delete).
local function sessions_all(P)
    local h, r = redis.call('HGETALL', P .. 'm'), {}
    for i = 1, #h, 2 do
        if string.sub(h[i], 1, 1) == ':' then r[#r + 1] = {string.sub(h[i], 2), session_parse(h[i + 1])} end
    end
    return r
end

local function member_seen(cx)
    if not cx.prof._s then
        cx.prof._s = cx.now
        cx.pset._s = cx.now
        cx.tot.members = (cx.tot.members or 0) + 1
    end
end

local function stat_add(cx, week, field, delta)
    local s = cx.st[week]
    if not s then
        s = {}
        cx.st[week] = s
        cx.stw[#cx.stw + 1] = week
    end
    s[field] = (s[field] or 0) + delta
end

-- ---- leaderboards ----

local TIE_OFFSET = 1073741824 -- 2^30 ms (12 days): a write slightly early stays positive

local function age_band(bands, week, birth_year)
    if not birth_year then return nil end
    local age = tonumber(string.sub(week, 1, 4)) - birth_year
    for id, lo, hi in string.gmatch(bands, '([^:,]+):(%d+):(%d*)') do
        if age >= tonumber(lo) and (hi == '' or age <= tonumber(hi)) then return id end
    end
    return nil
end

-- The boards a member's week appears on ({} if they left the boards).
local function scopes_of(prof, week, ctx)
    if prof.boards == '0' then return {} end
    local s = {'all'}
    if prof.district then s[#s + 1] = 'district:' .. prof.district end
    if prof.team then s[#s + 1] = 'team:' .. prof.team end
    local band = age_band(ctx.b, week, tonumber(prof.birth_year))
    if band then s[#s + 1] = 'age:' .. band end
    return s
end

local function board_key(S, week, scope)
    return S .. 'lb:' .. week .. ':' .. scope
end

-- A week board keeps a TTL from its first entry on this shard: the marker
-- "_t<scope>" in the shard's st:<week> says it was set (flushed with the figures).
local function board_set(cx, week, scope, score)
    redis.call('ZADD', board_key(cx.S, week, scope), score, cx.user)
    cx.touched[#cx.touched + 1] = 'week:' .. week .. ':' .. scope
    stat_add(cx, week, '_t' .. scope, 0)
    cx.mark[week] = cx.mark[week] or {}
    if cx.mark[week][scope] ~= 'reset' then cx.mark[week][scope] = 'set' end
end

-- Removing may empty (and so delete) the board: its marker is cleared, so
-- the next first entry sets the TTL again.
local function board_rem(cx, week, scope)
    local n = redis.call('ZREM', board_key(cx.S, week, scope), cx.user)
    cx.touched[#cx.touched + 1] = 'week:' .. week .. ':' .. scope
    stat_add(cx, week, '_t' .. scope, 0)
    cx.mark[week] = cx.mark[week] or {}
    cx.mark[week][scope] = 'reset'
    return n
end

-- The score for eq equivalent minutes reached now (tie-break: earlier first).
local function board_score(cx, week, eq)
    local rel = cx.now - week_start_ms(week) + TIE_OFFSET
    rel = math.max(0, math.min(TIE - 1, rel))
    return num(eq * TIE + (TIE - 1 - rel))
end

-- ---- staff statistics (aggregates only) ----
--
-- Per shard and ISO week, fit:{sN}:st:<week> holds sums over members, field
-- "<segment>|<figure>": segments all, d:<district>, a:<age band>, g:<gender>;
-- figures a (active: any MVPA), am (aerobic target met), gm (whole guideline
-- met), n (sessions), mo, vi, eq (minutes). Internal fields start with "_":
-- "_d<date>" counts the members active on a date, "_t<scope>" marks a board
-- whose TTL is set. Each member's last contribution to a week is kept in the
-- week's "c", so a change subtracts the old contribution and adds the new one:
-- the sums always equal the members' data.
-- The WHO 2020 rules here mirror protocol/fit_who.c (the targets come in ctx.who
-- from config/who.json); a test compares the two.

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

-- A week's contribution from its running figures and the profile (nil: none).
local function contribution(cx, week, t)
    local c = {a = 0, am = 0, gm = 0, n = t.n, mo = t.mo, vi = t.vi, eq = t.mo + 2 * t.vi}
    if c.mo + c.vi > 0 then c.a = 1 end
    if c.a == 0 and c.n == 0 then return nil end
    local p = cx.prof
    local band = who_band(cx.ctx.who, tonumber(p.birth_year), p.pregnant == '1', tonumber(string.sub(week, 1, 4)))
    local figure = band.measure == 'mvpa' and (c.mo + c.vi) or c.eq
    if figure >= band.aerobic_min then c.am = 1 end
    if c.am == 1 and t.vd >= band.vigorous_days and t.sd >= band.strength_days and t.bd >= band.balance_days then
        c.gm = 1
    end
    local segs = {'all'}
    if p.district then segs[#segs + 1] = 'd:' .. p.district end
    local ab = age_band(cx.ctx.b, week, tonumber(p.birth_year))
    if ab then segs[#segs + 1] = 'a:' .. ab end
    if p.gender then segs[#segs + 1] = 'g:' .. p.gender end
    return {c = c, s = segs}
end

local function contribution_add(cx, week, k, sign)
    if not k then return end
    for _, seg in ipairs(k.s) do
        for _, f in ipairs(STAT_FIGURES) do
            if k.c[f] ~= 0 then stat_add(cx, week, seg .. '|' .. f, sign * k.c[f]) end
        end
    end
end

-- Writes the call's shared figures: per touched week one HMGET and one HSET of
-- fit:{sN}:st:<week> (figures, active days, board TTL markers), then one of
-- fit:{sN}:tot (programme totals and the uploads-per-minute ring "_u<m mod 60>"
-- = "minute:count"), then announces the boards.
local function call_finish(cx)
    if next(cx.pset) then
        local a = {}
        for k, v in pairs(cx.pset) do
            a[#a + 1] = k
            a[#a + 1] = v
        end
        redis.call('HSET', cx.P .. 'm', unpack(a))
    end
    for _, week in ipairs(cx.stw) do
        local key = cx.S .. 'st:' .. week
        local s, marks = cx.st[week], cx.mark[week] or {}
        local fields, set = {}, {}
        for f, d in pairs(s) do
            if d ~= 0 then fields[#fields + 1] = f end
        end
        local nd = #fields
        for sc, m in pairs(marks) do
            if m == 'set' then fields[#fields + 1] = '_t' .. sc end
        end
        if #fields > 0 then
            local v = redis.call('HMGET', key, unpack(fields))
            for i = 1, nd do
                set[#set + 1] = fields[i]
                set[#set + 1] = num((tonumber(v[i]) or 0) + s[fields[i]])
            end
            for i = nd + 1, #fields do
                if not v[i] or v[i] == '' then
                    redis.call('PEXPIRE', board_key(cx.S, week, string.sub(fields[i], 3)), cx.ctx.t)
                    set[#set + 1] = fields[i]
                    set[#set + 1] = '1'
                end
            end
        end
        for sc, m in pairs(marks) do
            if m == 'reset' then
                set[#set + 1] = '_t' .. sc
                set[#set + 1] = ''
            end
        end
        if #set > 0 then redis.call('HSET', key, unpack(set)) end
    end
    local fields = {}
    for f, d in pairs(cx.tot) do
        if d ~= 0 then fields[#fields + 1] = f end
    end
    local nt = #fields
    local minute = cx.upm and math.floor(cx.now / 60000)
    if minute then fields[#fields + 1] = '_u' .. (minute % 60) end
    if #fields > 0 then
        local v, set = redis.call('HMGET', cx.S .. 'tot', unpack(fields)), {}
        for i = 1, nt do
            set[#set + 1] = fields[i]
            set[#set + 1] = num((tonumber(v[i]) or 0) + cx.tot[fields[i]])
        end
        if minute then
            local m, n = string.match(v[nt + 1] or '', '^(%d+):(%d+)$')
            n = (tonumber(m) == minute) and tonumber(n) + 1 or 1
            set[#set + 1] = fields[nt + 1]
            set[#set + 1] = minute .. ':' .. n
        end
        redis.call('HSET', cx.S .. 'tot', unpack(set))
    end
    publish(cx.touched)
end

-- ---- days and weeks ----

-- The day's totals from its items ({s, m, x}), or nil when it holds nothing live.
-- Sweeps the segments' boundaries; each elementary interval goes to the highest
-- intensity of the sessions covering it, so overlaps count once.
local function day_of_items(x)
    local ev, live = {}, false
    local mo, vi, li, ssteps, sdist = 0, 0, 0, 0, 0
    local asteps, adist, strength, balance = 0, 0, 0, 0
    -- Each boundary is one number, t * 8 + (4 for a start, 0 for an end) + level, so
    -- that the sort is numeric (ends before starts at the same instant).
    local n = 0
    sessions_each(x, function(_, s, e, lvl, sg, ba, steps, dist)
        ev[n + 1] = s * 8 + 4 + lvl
        ev[n + 2] = e * 8 + lvl
        n = n + 2
        if sg == 1 then strength = 1 end
        if ba == 1 then balance = 1 end
        if steps > 0 then asteps = asteps + steps end
        if dist > 0 then adist = adist + dist end
    end)
    live = n > 0
    for _, m in pairs(x.m) do
        live = true
        mo = math.max(mo, m.mo)
        vi = math.max(vi, m.vi)
        li = math.max(li, m.li)
        ssteps = math.max(ssteps, m.st)
        sdist = math.max(sdist, m.di)
    end
    if not live then return nil end
    table.sort(ev)
    local cnt, ms, prev = {0, 0, 0}, {0, 0, 0}, nil
    for _, e in ipairs(ev) do
        local t, code = math.floor(e / 8), e % 8
        if prev and t > prev then
            local lvl = (cnt[3] > 0 and 3) or (cnt[2] > 0 and 2) or (cnt[1] > 0 and 1) or 0
            if lvl > 0 then ms[lvl] = ms[lvl] + (t - prev) end
        end
        local lvl = code % 4
        cnt[lvl] = cnt[lvl] + (code >= 4 and 1 or -1)
        prev = t
    end
    return {
        mo = math.max(mo, minutes(ms[2])),
        vi = math.max(vi, minutes(ms[3])),
        li = math.max(li, minutes(ms[1])),
        st = math.max(ssteps, asteps),
        di = math.max(sdist, math.floor(adist * 10 + 0.5) / 10),
        sg = strength,
        ba = balance,
    }
end

-- Reads some days of a week with the week's running figures, contribution and
-- board score, and any extra fields: one HMGET. The caller edits
-- W.days[date].x (and W.set / W.del for extra fields), then week_save.
local function week_load(P, week, dates, extra)
    local f = {}
    for _, d in ipairs(dates) do
        f[#f + 1] = wd(d)
        f[#f + 1] = 'x' .. wd(d)
    end
    f[#f + 1] = 't'
    f[#f + 1] = 'c'
    f[#f + 1] = 'b'
    for _, e in ipairs(extra or {}) do f[#f + 1] = e end
    local v = redis.call('HMGET', P .. 'w:' .. week, unpack(f))
    local W = {week = week, dates = dates, days = {}, nd = 0, set = {}, del = {}, extra = {}}
    for i, d in ipairs(dates) do
        W.days[d] = {old = day_parse(v[2 * i - 1] or nil), x = items_parse(v[2 * i] or nil, d), had_x = v[2 * i] and true}
    end
    local k = 2 * #dates
    W.t, W.c, W.b = v[k + 1] or nil, v[k + 2] or nil, v[k + 3] or nil
    for i, e in ipairs(extra or {}) do W.extra[e] = v[k + 3 + i] or nil end
    return W
end

local function active(d)
    return d ~= nil and d.mo + d.vi > 0
end

-- Recomputes the edited days, moves the week's figures by their deltas, and
-- writes the week back (one HSET; an HDEL only when a day empties); then the
-- boards (one ZADD per scope when the score changed) and the staff figures.
local function week_save(cx, W)
    local key = cx.P .. 'w:' .. W.week
    local t = figures_parse(W.t)
    local set, del = W.set, W.del
    local function move(d, sign)
        if not d then return end
        t.mo, t.vi = t.mo + sign * d.mo, t.vi + sign * d.vi
        if d.vi > 0 then t.vd = t.vd + sign end
        if d.sg == 1 then t.sd = t.sd + sign end
        if d.ba == 1 then t.bd = t.bd + sign end
    end
    for _, date in ipairs(W.dates) do
        local day = W.days[date]
        local new = day_of_items(day.x)
        move(day.old, -1)
        move(new, 1)
        if new then
            set[#set + 1] = wd(date)
            set[#set + 1] = day_pack(new)
        elseif day.old then
            del[#del + 1] = wd(date)
        end
        if has_sessions(day.x) or next(day.x.m) or next(day.x.x) or next(day.x.d) then
            set[#set + 1] = 'x' .. wd(date)
            set[#set + 1] = items_pack(day.x, date)
        elseif day.had_x then
            del[#del + 1] = 'x' .. wd(date)
        end
        if active(day.old) ~= active(new) then stat_add(cx, W.week, '_d' .. date, active(new) and 1 or -1) end
        cx.changes[#cx.changes + 1] = {date = date, old = day.old, new = new}
    end
    t.n = t.n + W.nd
    set[#set + 1] = 't'
    set[#set + 1] = figures_pack(t)
    -- Boards: the score changes (and takes a new tie-break time) only when
    -- the week's equivalent minutes do.
    local eq, b = t.mo + 2 * t.vi, W.b
    if W.week >= cx.ctx.mw then
        local scs = scopes_of(cx.prof, W.week, cx.ctx)
        if eq <= 0 or #scs == 0 then
            if b then
                for _, sc in ipairs(scs) do board_rem(cx, W.week, sc) end
                b = nil
            end
        elseif not b or math.floor(tonumber(b) / TIE) ~= eq then
            b = board_score(cx, W.week, eq)
            for _, sc in ipairs(scs) do board_set(cx, W.week, sc, b) end
        end
    end
    if b then
        set[#set + 1] = 'b'
        set[#set + 1] = b
    elseif W.b then
        del[#del + 1] = 'b'
    end
    -- Staff figures: the old contribution out, the new one in.
    local k = contribution(cx, W.week, t)
    local packed = k and contribution_pack(k)
    if packed ~= W.c then
        contribution_add(cx, W.week, contribution_parse(W.c), -1)
        contribution_add(cx, W.week, k, 1)
        if packed then
            set[#set + 1] = 'c'
            set[#set + 1] = packed
        else
            del[#del + 1] = 'c'
        end
    end
    if not W.t then redis.call('ZADD', cx.P .. 'wks', week_index(W.week), W.week) end
    redis.call('HSET', key, unpack(set))
    if #del > 0 then redis.call('HDEL', key, unpack(del)) end
end

-- ---- virtual challenges (the member's side) ----
--
-- A member who joins a challenge gets its definition copied to their member
-- hash, field "_ch" (challenges_parse): per challenge its window (from, to
-- as local dates; fm, tm in UTC ms), metric, progress, contribution to the
-- team (capped), the UTC ms the goal was reached (achievements stay) and the
-- definition as joined (JSON: also goal, team, cap, name, types). The
-- challenge's boards live on each shard, merged on read:
--   fit:{sN}:ch:<event>/all    zset  user -> progress
--   fit:{sN}:ch:<event>/teams  zset  team -> sum of its members' capped progress
-- Joining computes progress from the member's data in the window; after that
-- every change moves it by the changed days' deltas (equivalent minutes,
-- active days) or the changed sessions' distances, in the same call, so edits
-- and deletes un-count exactly. Challenges whose window holds no changed date
-- (ended ones included) are not touched.

local function type_in(def, t)
    for _, x in ipairs(def.types or {}) do
        if x == t then return true end
    end
    return false
end

-- Metres a session counts toward a distance challenge (0 if none).
local function session_distance(def, s)
    if not s.start or s.start < def.fm or s.start > def.tm then return 0 end
    if not s.d then s.d = cjson.decode(s.doc) end
    if def.dj then def = challenge_def(def) end
    if type_in(def, s.d.type) and type(s.d.distance_m) == 'number' then return s.d.distance_m end
    return 0
end

local function day_progress(def, d)
    if not d then return 0 end
    if def.metric == 'active_days' then return active(d) and 1 or 0 end
    return d.mo + 2 * d.vi
end

-- Sets a challenge's progress p, its boards and badge. With refresh set (the
-- profile changed), the member's board entry is rewritten even if progress did
-- not change: "boards": false keeps them off challenge boards too (their
-- progress still counts for their team, an aggregate).
local function challenge_set(cx, id, rec, p, refresh)
    local def, S = challenge_def(rec), cx.S
    local listed = cx.prof.boards ~= '0'
    local c = p
    if type(def.cap) == 'number' and def.cap > 0 then c = math.min(p, def.cap) end
    if p > 0 and listed then
        redis.call('ZADD', S .. 'ch:' .. id .. '/all', p, cx.user)
    elseif rec.p > 0 or refresh then
        redis.call('ZREM', S .. 'ch:' .. id .. '/all', cx.user)
    end
    cx.touched[#cx.touched + 1] = 'challenge:' .. id .. ':all'
    if def.team and def.team ~= '' and c ~= rec.c then
        local tkey = S .. 'ch:' .. id .. '/teams'
        local t = tonumber(redis.call('ZINCRBY', tkey, c - rec.c, def.team))
        -- A team back at nothing leaves the board, like one that never scored.
        if t <= 1e-9 then redis.call('ZREM', tkey, def.team) end
        cx.touched[#cx.touched + 1] = 'challenge:' .. id .. ':teams'
    end
    rec.p, rec.c = p, c
    if p >= def.goal and not rec.a then
        rec.a = cx.now
        -- Through the per-member relay (origin 0: every process delivers it).
        local badge = cjson.encode({type = 'badge', event = id, name = def.name,
                                    metric = def.metric, goal = def.goal, progress = p, at_ms = rec.a})
        redis.call('PUBLISH', 'fit:dev', '0000000000000000\n' .. cx.user .. '\n' .. badge)
    end
end

-- Moves every challenge whose window holds a change of this call (cx.changes:
-- days; sessions: {start, doc, sign} of sessions added (+1) or removed (-1)).
local function challenges_apply(cx, sessions)
    if not cx.ch then return end
    local dirty = false
    for id, rec in pairs(cx.ch) do
        local def, delta = rec, 0
        if def.metric == 'distance_m' then
            for _, s in ipairs(sessions) do delta = delta + s.sign * session_distance(def, s) end
            delta = math.floor(delta * 1000 + 0.5) / 1000
        else
            for _, ch in ipairs(cx.changes) do
                if ch.date >= def.from and ch.date <= def.to then
                    delta = delta + day_progress(def, ch.new) - day_progress(def, ch.old)
                end
            end
        end
        if delta ~= 0 then
            local p = rec.p + delta
            if def.metric == 'distance_m' then p = math.floor(p * 1000 + 0.5) / 1000 end
            challenge_set(cx, id, rec, p, false)
            dirty = true
        end
    end
    if dirty then cx.pset._ch = challenges_pack(cx.ch) end
end

-- A new challenge's progress from what the member already logged in its window
-- (at join only: the weeks of the window, or the sessions for distance).
local function challenge_initial(P, def)
    local total = 0
    if def.metric == 'distance_m' then
        for _, e in ipairs(sessions_all(P)) do
            if not e[2].del then total = total + session_distance(def, e[2]) end
        end
        -- Folded sessions (P.."w:" field k<date>, see fit_fold) of the window's weeks.
        local lo, hi = week_index(iso_week_of(date_of(math.floor(def.fm / 86400000) - 1))),
                       week_index(iso_week_of(date_of(math.floor(def.tm / 86400000) + 1)))
        for _, w in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wks', lo, hi)) do
            local wh = redis.call('HGETALL', P .. 'w:' .. w)
            for i = 1, #wh, 2 do
                if string.sub(wh[i], 1, 1) == 'k' then
                    for _, k in ipairs(folded_parse(wh[i + 1])) do
                        if k.start >= def.fm and k.start <= def.tm and type_in(def, k.type) and k.dist ~= '' then
                            total = total + tonumber(k.dist)
                        end
                    end
                end
            end
        end
        return math.floor(total * 1000 + 0.5) / 1000
    end
    local lo, hi = week_index(iso_week_of(def.from)), week_index(iso_week_of(def.to))
    for _, w in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wks', lo, hi)) do
        local dates = week_dates(w)
        local v = redis.call('HMGET', P .. 'w:' .. w, unpack(WEEKDAYS))
        for i, date in ipairs(dates) do
            if date >= def.from and date <= def.to then total = total + day_progress(def, day_parse(v[i] or nil)) end
        end
    end
    return total
end

-- fit_challenge_join: KEYS: the member's log key. ARGV: event id, definition JSON.
-- Returns {"joined" | "duplicate", progress JSON, achieved at ms or '', the team joined}.
local function challenge_join(keys, args)
    local P, id = prefix_of(keys[1]), args[1]
    local cx = call_new(P, {})
    profile_load(cx)
    cx.ch = cx.ch or {}
    local rec = cx.ch[id]
    local status = 'duplicate'
    if not rec then
        status = 'joined'
        cx.now = now_ms()
        local d = cjson.decode(args[2])
        rec = {from = d.from, to = d.to, fm = d.fm, tm = d.tm, metric = d.metric, p = 0, c = 0, dj = args[2], d = d}
        cx.ch[id] = rec
        redis.call('HINCRBY', cx.S .. 'tot', 'participations', 1)
        redis.call('HINCRBY', cx.S .. 'chn', id, 1)
        local p = challenge_initial(P, rec.d)
        if p ~= 0 then challenge_set(cx, id, rec, p, false) end
        redis.call('HSET', P .. 'm', '_ch', challenges_pack(cx.ch))
        publish(cx.touched)
    end
    return {status, cjson.encode({p = rec.p, c = rec.c}), rec.a and num(rec.a) or '', challenge_def(rec).team or ''}
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


-- ---- sessions and summaries ----

-- The (date, week, segment) triples of ARGV from index first, grouped by week
-- in order of appearance: {{week, dates, segs = {date -> segment}}, ...}.
local function segments_by_week(args, first, n, groups, index)
    groups, index = groups or {}, index or {}
    local dates = {}
    for i = 0, n - 1 do
        local date, week = args[first + 3 * i], args[first + 3 * i + 1]
        local g = index[week]
        if not g then
            g = {week = week, dates = {}, segs = {}, seen = {}}
            index[week] = g
            groups[#groups + 1] = g
        end
        if not g.seen[date] then
            g.seen[date] = true
            g.dates[#g.dates + 1] = date
        end
        g.segs[date] = segment_of(cjson.decode(args[first + 3 * i + 2]), date)
        dates[#dates + 1] = date
    end
    return groups, index, dates
end

-- Groups stored dates of a session (to be removed) by week, joining groups.
local function dates_by_week(dates, groups, index)
    for _, date in ipairs(dates) do
        local week = iso_week_of(date)
        local g = index[week]
        if not g then
            g = {week = week, dates = {}, segs = {}, seen = {}}
            index[week] = g
            groups[#groups + 1] = g
        end
        g.old = true
        if not g.seen[date] then
            g.seen[date] = true
            g.dates[#g.dates + 1] = date
        end
    end
    return groups, index
end

-- Applies one session's change to its weeks: its old days lose it, its new
-- days get their segments; each week's session count moves by one per side.
local function session_apply(cx, cid, groups, deleted_on, is_new)
    local weeks = {}
    for _, g in ipairs(groups) do
        local W = week_load(cx.P, g.week, g.dates)
        for _, date in ipairs(g.dates) do
            W.days[date].x.s[cid] = g.segs[date] or false
            W.days[date].x.append = is_new
        end
        if deleted_on and W.days[deleted_on] then W.days[deleted_on].x.d[cid] = true end
        W.nd = (next(g.segs) and 1 or 0) - (g.old and 1 or 0)
        week_save(cx, W)
        weeks[#weeks + 1] = g.week
    end
    return weeks
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
    local device, ctx, cid, doc, start = args[1], ctx_decode(args[2]), args[3], args[4], tonumber(args[5])
    local groups, _, dates = segments_by_week(args, 7, tonumber(args[6]))
    local cx = call_new(P, ctx)
    local v = profile_load(cx, cid)
    if v then
        local cur = session_parse(v)
        if cur.del then return {'deleted', cur.rev} end
        if cur.doc == doc then return {'duplicate', cur.rev} end
        return {'conflict', cur.rev, cur.doc}
    end
    cx.pset[':' .. cid] = session_pack(1, false, start, dates, doc)
    local cursor = log_change(cx, 'activity', 'upsert', cid, 1, doc, device)
    local weeks = session_apply(cx, cid, groups, nil, true)
    member_seen(cx)
    cx.tot.activities = 1
    cx.upm = true
    challenges_apply(cx, {{start = start, doc = doc, sign = 1}})
    call_finish(cx)
    return add_weeks({'created', 1, cursor}, weeks)
end

-- fit_activity_update: replace a session's content if base_rev is current.
-- ARGV: device, ctx, client_id, base_rev, doc, start_ms, n, then (date, week, segment) x n.
-- Returns {"updated", rev, cursor, weeks...} | {"duplicate", rev} | {"not_found"}
--       | {"conflict", rev, doc, deleted}.
local function activity_update(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, cid = args[1], ctx_decode(args[2]), args[3]
    local base, doc, start = tonumber(args[4]), args[5], tonumber(args[6])
    local cx = call_new(P, ctx)
    local v = profile_load(cx, cid)
    if not v then return {'not_found'} end
    local cur = session_parse(v)
    if cur.del then return {'conflict', cur.rev, '', '1'} end
    if cur.rev ~= base then
        if cur.rev == base + 1 and cur.doc == doc then return {'duplicate', cur.rev} end
        return {'conflict', cur.rev, cur.doc, '0'}
    end
    local groups, index = dates_by_week(cur.dates, {}, {})
    local _, _, dates = segments_by_week(args, 8, tonumber(args[7]), groups, index)
    local rev = cur.rev + 1
    cx.pset[':' .. cid] = session_pack(rev, false, start, dates, doc)
    local cursor = log_change(cx, 'activity', 'upsert', cid, rev, doc, device)
    local weeks = session_apply(cx, cid, groups)
    challenges_apply(cx, {{start = cur.start, doc = cur.doc, sign = -1}, {start = start, doc = doc, sign = 1}})
    call_finish(cx)
    return add_weeks({'updated', rev, cursor}, weeks)
end

-- fit_activity_delete: turn a session into a tombstone and recompute its days.
-- ARGV: device, ctx, client_id, base_rev ("" = unconditional).
-- Returns {"deleted", rev, cursor, weeks...} | {"duplicate", rev} | {"not_found"}
--       | {"conflict", rev, doc}.
local function activity_delete(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, cid = args[1], ctx_decode(args[2]), args[3]
    local cx = call_new(P, ctx)
    local v = profile_load(cx, cid)
    if not v then return {'not_found'} end
    local cur = session_parse(v)
    if cur.del then return {'duplicate', cur.rev} end
    if args[4] ~= '' and tonumber(args[4]) ~= cur.rev then return {'conflict', cur.rev, cur.doc} end
    local groups = dates_by_week(cur.dates, {}, {})
    local rev = cur.rev + 1
    cx.pset[':' .. cid] = session_pack(rev, true, cur.start, {}, nil)
    local cursor = log_change(cx, 'activity', 'delete', cid, rev, nil, device)
    local weeks = session_apply(cx, cid, groups, cur.dates[1])
    cx.tot.activities = -1
    challenges_apply(cx, {{start = cur.start, doc = cur.doc, sign = -1}})
    call_finish(cx)
    return add_weeks({'deleted', rev, cursor}, weeks)
end

-- fit_activity_get: the stored item. ARGV: client_id. Returns {rev, doc, del} or {}.
local function activity_get(keys, args)
    local v = redis.call('HGET', prefix_of(keys[1]) .. 'm', ':' .. args[1])
    if not v then return {} end
    local cur = session_parse(v)
    return {cur.rev, cur.doc, cur.del and '1' or '0'}
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
    local device, ctx, date, week, source = args[1], ctx_decode(args[2]), args[3], args[4], args[5]
    local rec, doc = tonumber(args[6]), args[7]
    local dfield = 'd' .. wd(date) .. '|' .. source
    local W = week_load(P, week, {date}, {dfield})
    local x = W.days[date].x
    local c = x.m[source]
    if c then
        local cdoc = W.extra[dfield] or ''
        if c.r > rec then return {'stale'} end
        if c.r == rec then
            if cdoc == doc then return {'duplicate'} end
            if cdoc > doc then return {'stale'} end
        end
    elseif x.x[source] and x.x[source] >= rec then
        return {'stale'}
    end
    W.set[1], W.set[2] = dfield, doc
    x.m[source] = {
        r = rec, dm = tonumber(args[13]),
        mo = tonumber(args[8]), vi = tonumber(args[9]), li = tonumber(args[10]),
        st = tonumber(args[11]), di = tonumber(args[12]),
    }
    x.x[source] = nil
    local cx = call_new(P, ctx)
    local cursor = log_change(cx, 'summary', 'upsert', date .. '|' .. source, 1, doc, device)
    profile_load(cx)
    week_save(cx, W)
    member_seen(cx)
    cx.upm = true
    challenges_apply(cx, {})
    call_finish(cx)
    return {'applied', cursor, week}
end

-- fit_summary_delete: remove a day's summary from one source.
-- ARGV: device, ctx, date, week, source.
-- Returns {"deleted", cursor, week} | {"duplicate"} | {"not_found"}.
local function summary_delete(keys, args)
    local P = prefix_of(keys[1])
    local device, ctx, date, week, source = args[1], ctx_decode(args[2]), args[3], args[4], args[5]
    local W = week_load(P, week, {date})
    local x = W.days[date].x
    local c = x.m[source]
    if not c then
        if x.x[source] then return {'duplicate'} end
        return {'not_found'}
    end
    x.m[source] = nil
    x.x[source] = c.r
    W.del[1] = 'd' .. wd(date) .. '|' .. source
    local cx = call_new(P, ctx)
    local cursor = log_change(cx, 'summary', 'delete', date .. '|' .. source, 1, nil, device)
    profile_load(cx)
    week_save(cx, W)
    challenges_apply(cx, {})
    call_finish(cx)
    return {'deleted', cursor, week}
end

-- fit_profile_set: set (or, for an empty value, remove) profile fields.
-- A member's boards follow their profile: a new district, team, birth year,
-- name or "boards" flag moves (or removes) their entries on every kept week
-- (the weeks from ctx.mw on: at most boards.keep_weeks + 1 of them), keeping
-- their score and its tie-break time. The staff figures of those weeks follow
-- too; older weeks keep the segments they were counted under.
-- ARGV: device, ctx, then field, value, ...
-- Returns {cursor, {field, value, ...}} (the whole profile after the change).
local function profile_set(keys, args)
    local P = prefix_of(keys[1])
    local cx = call_new(P, ctx_decode(args[2]))
    cx.now = now_ms()
    profile_load(cx)
    local old = cx.prof
    local weeks = redis.call('ZRANGEBYSCORE', P .. 'wks', week_index(cx.ctx.mw), '+inf')
    local before = {}
    for _, w in ipairs(weeks) do before[w] = redis.call('HMGET', P .. 'w:' .. w, 't', 'c', 'b') end
    local set, del = {}, {}
    for i = 3, #args, 2 do
        if args[i + 1] == '' then
            del[#del + 1] = args[i]
        else
            set[#set + 1] = args[i]
            set[#set + 1] = args[i + 1]
        end
    end
    if #set > 0 then redis.call('HSET', P .. 'm', unpack(set)) end
    if #del > 0 then redis.call('HDEL', P .. 'm', unpack(del)) end
    local name = redis.call('HGET', P .. 'm', 'display_name')
    if name then
        redis.call('HSET', cx.S .. 'lbnames', cx.user, name)
    else
        redis.call('HDEL', cx.S .. 'lbnames', cx.user)
    end
    profile_load(cx)
    cx.prof._s = old._s
    for _, w in ipairs(weeks) do
        local t, c, b = figures_parse(before[w][1] or nil), before[w][2] or nil, before[w][3] or nil
        local old_scopes, new_scopes = scopes_of(old, w, cx.ctx), scopes_of(cx.prof, w, cx.ctx)
        local keep = {}
        for _, sc in ipairs(new_scopes) do keep[sc] = true end
        for _, sc in ipairs(old_scopes) do
            if not keep[sc] then board_rem(cx, w, sc) end
        end
        local eq, nb = t.mo + 2 * t.vi, b
        if #new_scopes == 0 or eq <= 0 then
            nb = nil
        elseif not b then
            nb = board_score(cx, w, eq)
        end
        if nb then
            for _, sc in ipairs(new_scopes) do board_set(cx, w, sc, nb) end
        end
        local k = contribution(cx, w, t)
        local packed = k and contribution_pack(k)
        local wset = {}
        if packed ~= c then
            contribution_add(cx, w, contribution_parse(c), -1)
            contribution_add(cx, w, k, 1)
            if packed then
                wset[#wset + 1] = 'c'
                wset[#wset + 1] = packed
            else
                redis.call('HDEL', P .. 'w:' .. w, 'c')
            end
        end
        if nb ~= b then
            if nb then
                wset[#wset + 1] = 'b'
                wset[#wset + 1] = nb
            else
                redis.call('HDEL', P .. 'w:' .. w, 'b')
            end
        end
        if #wset > 0 then redis.call('HSET', P .. 'w:' .. w, unpack(wset)) end
    end
    -- Challenge boards follow the profile too (the "boards" flag, the name).
    if cx.ch then
        for id, rec in pairs(cx.ch) do challenge_set(cx, id, rec, rec.p, true) end
        cx.pset._ch = challenges_pack(cx.ch)
    end
    member_seen(cx)
    call_finish(cx)
    local h = profile_flat(P)
    local obj = {}
    for i = 1, #h, 2 do obj[h[i]] = h[i + 1] end
    local cursor = log_change(cx, 'profile', 'upsert', 'profile', 1, cjson.encode(obj), args[1])
    return {cursor, h}
end

-- ---- retention: folding old sessions ----
--
-- A session no change can reach any more (older than both the change log
-- window and the acceptance window: fitsyncd computes the date) needs no
-- segment and no document: its day's figures already hold it. fit_fold drops
-- the segments, the session records, the tombstones of deleted sessions and
-- summaries, and keeps per session what export owes the member, in
-- k<weekday> (of the session's first date): "cid,rev,type,start,duration_s
-- or end,steps,distance_m" per session, ";" between sessions. The summaries
-- (figures and documents as sent) and every day's totals stay.

-- fit_fold: folds the member's weeks whose every day is at or before a date.
-- KEYS: the member's log key. ARGV: the newest local date that may be folded,
-- the most weeks to fold in this call (the work per call stays bounded; the
-- next call goes on from P.."m" field "_f", the last week folded).
-- Returns the number of weeks folded.
local function fold(keys, args)
    local P = prefix_of(keys[1])
    local maxw = week_index(iso_week_of(date_of(day_number(args[1]) - 6)))
    local done = redis.call('HGET', P .. 'm', '_f') or '0'
    local weeks = redis.call('ZRANGEBYSCORE', P .. 'wks', '(' .. done, maxw, 'LIMIT', 0, tonumber(args[2]))
    for _, w in ipairs(weeks) do
        local key = P .. 'w:' .. w
        local h = redis.call('HGETALL', key)
        local days, seen, order = {}, {}, {}
        for i = 1, #h, 2 do
            if string.sub(h[i], 1, 1) == 'x' then
                local date = week_dates(w)[tonumber(string.sub(h[i], 2)) + 1]
                local x = items_parse(h[i + 1], date)
                days[#days + 1] = {date, x}
                local function found(cid)
                    if not seen[cid] then
                        seen[cid] = true
                        order[#order + 1] = cid
                    end
                end
                sessions_each(x, found)
                for cid in pairs(x.d) do found(cid) end
            end
        end
        local set, del, drop, kept = {}, {}, {}, {}
        if #order > 0 then
            local f = {}
            for i, cid in ipairs(order) do f[i] = ':' .. cid end
            local v = redis.call('HMGET', P .. 'm', unpack(f))
            for i, cid in ipairs(order) do
                if v[i] then
                    local s = session_parse(v[i])
                    if s.del then
                        drop[#drop + 1] = f[i]
                    elseif iso_week_of(s.dates[1]) == w then
                        local first = s.dates[1]
                        kept[first] = kept[first] or {}
                        kept[first][#kept[first] + 1] = folded_entry(cid, s)
                        drop[#drop + 1] = f[i]
                    end
                end
            end
        end
        for _, e in ipairs(days) do
            local date, x = e[1], e[2]
            x.f, x.s, x.x, x.d = {}, {}, {}, {}
            if next(x.m) then
                set[#set + 1] = 'x' .. wd(date)
                set[#set + 1] = items_pack(x, date)
            else
                del[#del + 1] = 'x' .. wd(date)
            end
        end
        for date, list in pairs(kept) do
            set[#set + 1] = 'k' .. wd(date)
            set[#set + 1] = table.concat(list, ';')
        end
        if #set > 0 then redis.call('HSET', key, unpack(set)) end
        if #del > 0 then redis.call('HDEL', key, unpack(del)) end
        if #drop > 0 then redis.call('HDEL', P .. 'm', unpack(drop)) end
    end
    if #weeks > 0 then redis.call('HSET', P .. 'm', '_f', week_index(weeks[#weeks])) end
    return #weeks
end

-- fit_weeks_get: day totals of some weeks and the profile that sets their band.
-- ARGV: week names. Returns {profile hash, week days, week days, ...}, each
-- week as a flat {date, "mo,vi,li,st,di,sg,ba", ...} of the days with data.
local function weeks_get(keys, args)
    local P = prefix_of(keys[1])
    local r = {profile_flat(P)}
    for i = 1, #args do
        local dates = week_dates(args[i])
        local v, flat = redis.call('HMGET', P .. 'w:' .. args[i], unpack(WEEKDAYS)), {}
        for j, d in ipairs(dates) do
            if v[j] then
                flat[#flat + 1] = d
                flat[#flat + 1] = v[j]
            end
        end
        r[#r + 1] = flat
    end
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
-- Returns {cursor, profile hash, {cid, rev, doc, ...}, {key, doc, ...}, weeks},
-- sessions in start order, summaries in date order. Reads the weeks from the
-- one holding from_ms (less a day, for local offsets) on.
local function state(keys, args)
    local P = prefix_of(keys[1])
    local from = tonumber(args[1])
    local function by_first(x, y)
        if x[1] ~= y[1] then return x[1] < y[1] end
        return x[2] < y[2]
    end
    local list, sums = {}, {}
    for _, e in ipairs(sessions_all(P)) do
        if not e[2].del and e[2].start >= from then list[#list + 1] = {e[2].start, e[1], e[2].rev, e[2].doc} end
    end
    local lo = from > 0 and week_index(iso_week_of(date_of(math.floor(from / 86400000) - 1))) or 0
    for _, w in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wks', lo, '+inf')) do
        local wh, docs = redis.call('HGETALL', P .. 'w:' .. w), {}
        for i = 1, #wh, 2 do
            local kind = string.sub(wh[i], 1, 1)
            if kind == 'd' then
                docs[string.sub(wh[i], 2)] = wh[i + 1]
            elseif kind == 'k' then
                for _, k in ipairs(folded_parse(wh[i + 1])) do
                    if k.start >= from then list[#list + 1] = {k.start, k.cid, k.rev, folded_doc(k)} end
                end
            end
        end
        local dates = week_dates(w)
        for i = 1, #wh, 2 do
            if string.sub(wh[i], 1, 1) == 'x' then
                local day = string.sub(wh[i], 2)
                local date = dates[tonumber(day) + 1]
                for source, m in pairs(items_parse(wh[i + 1], date).m) do
                    local doc = docs[day .. '|' .. source]
                    if m.dm >= from and doc then sums[#sums + 1] = {m.dm, date .. '|' .. source, doc} end
                end
            end
        end
    end
    table.sort(list, by_first)
    table.sort(sums, by_first)
    local acts, flat = {}, {}
    for _, e in ipairs(list) do
        acts[#acts + 1] = e[2]
        acts[#acts + 1] = e[3]
        acts[#acts + 1] = e[4]
    end
    for _, e in ipairs(sums) do
        flat[#flat + 1] = e[2]
        flat[#flat + 1] = e[3]
    end
    return {head(P), profile_flat(P), acts, flat, redis.call('ZRANGE', P .. 'wks', 0, -1)}
end

-- fit_account_delete: removes every key of the user and their part of every
-- shared figure. Returns the number of keys and entries deleted.
local function account_delete(keys, args)
    local P = prefix_of(keys[1])
    local cx = call_new(P, ctx_decode(args[1]))
    cx.now = now_ms()
    profile_load(cx)
    local n = 0
    local function del(k) n = n + redis.call('DEL', k) end
    for _, w in ipairs(redis.call('ZRANGE', P .. 'wks', 0, -1)) do
        local v = redis.call('HMGET', P .. 'w:' .. w, 'c', 'b', unpack(WEEKDAYS))
        if v[2] and w >= cx.ctx.mw then
            for _, sc in ipairs(scopes_of(cx.prof, w, cx.ctx)) do n = n + board_rem(cx, w, sc) end
        end
        contribution_add(cx, w, contribution_parse(v[1] or nil), -1)
        for i, date in ipairs(week_dates(w)) do
            if active(day_parse(v[i + 2] or nil)) then stat_add(cx, w, '_d' .. date, -1) end
        end
        del(P .. 'w:' .. w)
    end
    n = n + redis.call('HDEL', cx.S .. 'lbnames', cx.user)
    for id, rec in pairs(cx.ch or {}) do
        n = n + redis.call('ZREM', cx.S .. 'ch:' .. id .. '/all', cx.user)
        local def = challenge_def(rec)
        if def.team and def.team ~= '' and rec.c ~= 0 then
            redis.call('ZINCRBY', cx.S .. 'ch:' .. id .. '/teams', -rec.c, def.team)
        end
        redis.call('HINCRBY', cx.S .. 'chn', id, -1)
        cx.touched[#cx.touched + 1] = 'challenge:' .. id .. ':all'
        cx.touched[#cx.touched + 1] = 'challenge:' .. id .. ':teams'
    end
    if cx.prof._s then cx.tot.members = -1 end
    local live = 0
    for _, e in ipairs(sessions_all(P)) do
        if not e[2].del then live = live + 1 end
    end
    cx.tot.activities = -live
    call_finish(cx)
    for _, k in ipairs({'m', 'log', 'wks'}) do del(P .. k) end
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
-- then one flat hash per week}. Internal fields ("_...") are left out.
local function stats_read(keys, args)
    local S = string.match(keys[1], '^(fit:{[^}]*}:)')
    local function public(h)
        local r, internal = {}, {}
        for i = 1, #h, 2 do
            if string.sub(h[i], 1, 1) == '_' then
                internal[h[i]] = h[i + 1]
            else
                r[#r + 1] = h[i]
                r[#r + 1] = h[i + 1]
            end
        end
        return r, internal
    end
    local tot, ring = public(redis.call('HGETALL', keys[1]))
    local r = {tot}
    r[#r + 1] = redis.call('HGET', S .. 'st:' .. iso_week_of(args[1]), '_d' .. args[1]) or '0'
    local upm, minute = {}, tonumber(args[2])
    for i = 59, 0, -1 do
        local m, c = string.match(ring['_u' .. ((minute - i) % 60)] or '', '^(%d+):(%d+)$')
        upm[#upm + 1] = (tonumber(m) == minute - i) and c or '0'
    end
    r[#r + 1] = upm
    local events, rows = {}, redis.call('HGETALL', S .. 'evs')
    for i = 1, #rows, 2 do
        local e = cjson.decode(rows[i + 1])
        events[#events + 1] = {rows[i], e[1], e[2], e[3], e[4], e[5]}
    end
    r[#r + 1] = events
    r[#r + 1] = redis.call('HGETALL', S .. 'chn')
    r[#r + 1] = redis.call('HGETALL', S .. 'conns')
    for i = 3, #args do r[#r + 1] = (public(redis.call('HGETALL', S .. 'st:' .. args[i]))) end
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
redis.register_function('fit_fold', fold)
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

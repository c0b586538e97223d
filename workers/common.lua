#!lua name=fitsync
--[[
fitsync's Redis Functions library is built from three files (tools/embed.cmake):
this one first, whose helpers every later file shares, then fitsync.lua
(members: activities, weeks, sync, boards, challenges, staff figures) and
events.lua (live events), each in a do ... end block of its own.
--]]

-- 2^36: room in a score for a tie-break clock in milliseconds (about 795 days).
-- Weekly boards rank equal minutes by who reached them first; event standings
-- rank equal laps by the earlier last lap. Exact in a double below 65,536 x 2^36.
local TIE = 68719476736

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- "fit:{sN}:" of any key: what lives per shard (boards, totals, statistics) hangs off it.
local function shard_of(k)
    return string.match(k, '^(fit:{[^}]*}:)')
end

-- Announces changed boards (names like "week:2026-W10:all") on "fit:lb", once each,
-- so that every fitsyncd marks them dirty (workers/fit_board_hub.c).
local function publish(touched)
    local seen, names = {}, {}
    for _, name in ipairs(touched) do
        if not seen[name] then
            seen[name] = true
            names[#names + 1] = name
        end
    end
    if #names > 0 then redis.call('PUBLISH', 'fit:lb', table.concat(names, '\n')) end
end

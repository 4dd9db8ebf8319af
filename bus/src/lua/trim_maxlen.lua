#!lua flags=allow-oom
-- Plain MAXLEN-style trimming with its losses counted in the same atomic step: per group, the
-- entries below the floor it has not acknowledged (never delivered, or pending: those are
-- acknowledged here so its PEL drains), then XTRIM MINID floor. Counted and trimmed together, no
-- read or acknowledgement can come in between. allow-oom: trimming frees memory.
-- KEYS[1] = stream; ARGV[1] = floor id (entries below it go); ARGV[2] = entries examined per group
-- Returns {entries trimmed, {group, entries it lost}...}.
local stream, floor = KEYS[1], ARGV[1]
local limit = tonumber(ARGV[2])
local lost = {}
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then
      name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then
      last = g[i + 1]
    end
  end
  local undelivered = #redis.call('XRANGE', stream, '(' .. last, '(' .. floor, 'COUNT', limit)
  local ids = {}
  for _, p in ipairs(redis.call('XPENDING', stream, name, '-', '(' .. floor, limit)) do
    ids[#ids + 1] = p[1]
  end
  for j = 1, #ids, 1000 do
    redis.call('XACK', stream, name, unpack(ids, j, math.min(j + 999, #ids)))
  end
  lost[#lost + 1] = {name, undelivered + #ids}
end
return {redis.call('XTRIM', stream, 'MINID', floor), lost}

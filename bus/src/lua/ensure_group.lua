-- Create a consumer group at `0` only where that cannot replay anything: when the stream is absent
-- or empty. A group missing on a stream with entries is reported, never recreated: at `0` it
-- would process the whole retained stream again (after someone deleted the group, say).
-- Checking and creating in one script leaves no gap for an XADD in between. The only write is
-- the last command, so the script cannot fail after writing.
-- KEYS[1] = stream; ARGV[1] = group
-- Returns {'created'}, {'exists'} or {'missing', <stream length>}. A key of another type fails
-- with WRONGTYPE before anything is written.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
  return {'created'}
end
-- XINFO GROUPS rows are flat name/value lists; look the name up rather than trust its position.
for _, row in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  for i = 1, #row, 2 do
    if row[i] == 'name' and row[i + 1] == ARGV[1] then
      return {'exists'}
    end
  end
end
local len = redis.call('XLEN', KEYS[1])
if len > 0 then
  return {'missing', len}
end
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
return {'created'}

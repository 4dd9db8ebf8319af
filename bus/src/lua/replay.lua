-- Replay one dead letter atomically: put its original fields back on the original stream (same
-- `id` field) and delete it from the dead letter stream. Replaying it again finds nothing.
-- KEYS[1] = dead letter stream; KEYS[2] = the entry's dlq_stream; ARGV[1] = dead letter entry id
-- Returns the new entry id, or false when the dead letter no longer exists.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return false
end
local fields = found[1][2]
local args = {'XADD', KEYS[2], '*'}
local target = nil
for i = 1, #fields, 2 do
  local name = fields[i]
  if name == 'dlq_stream' then
    target = fields[i + 1]
  end
  if string.sub(name, 1, 4) ~= 'dlq_' then
    args[#args + 1] = name
    args[#args + 1] = fields[i + 1]
  end
end
if target ~= KEYS[2] then
  return redis.error_reply('REPLAYTARGET dead letter ' .. ARGV[1] .. ' belongs to ' .. tostring(target))
end
local id = redis.call(unpack(args))
redis.call('XDEL', KEYS[1], ARGV[1])
return id

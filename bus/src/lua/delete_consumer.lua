-- Delete a dead consumer from its group, re-checking under the script's atomicity that it has no
-- heartbeat and an empty PEL (XGROUP DELCONSUMER drops the consumer's PEL with it).
-- KEYS[1] = stream; KEYS[2] = the consumer's heartbeat key; ARGV[1] = group; ARGV[2] = consumer
-- Returns 1 when deleted, 0 when it was alive or still held entries.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1

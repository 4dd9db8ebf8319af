-- Moves a cursor forward, never back: sets KEYS[1] to ARGV[1] when that is greater than the
-- current value or the key is unset. Returns the cursor after the call.
local cur = tonumber(redis.call('GET', KEYS[1]))
local new = tonumber(ARGV[1])
if cur == nil or new > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return new
end
return cur

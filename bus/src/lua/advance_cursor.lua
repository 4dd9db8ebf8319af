-- Moves a cursor forward, never back: sets KEYS[1] to ARGV[1] when that is greater than the
-- current value or the key is unset. Returns the cursor after the call. A key that holds
-- something other than a number is an error, not an unset cursor: it is left as it is.
local raw = redis.call('GET', KEYS[1])
local new = tonumber(ARGV[1])
if not raw then
  redis.call('SET', KEYS[1], ARGV[1])
  return new
end
local cur = tonumber(raw)
if cur == nil then
  return redis.error_reply('ERR cursor ' .. KEYS[1] .. ' holds a value that is not a number')
end
if new > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return new
end
return cur

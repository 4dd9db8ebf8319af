-- Publish one event: optional idempotency key, optional hard backlog limit, then XADD.
-- KEYS[1] = stream; KEYS[2] = idempotency key (optional)
-- ARGV[1] = idempotency TTL in ms; ARGV[2] = backlog limit (0 = none); ARGV[3..] = field, value, ...
-- Returns {entry id, 1 if the key already existed (duplicate) else 0}.
if #KEYS > 1 then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    return {existing, 1}
  end
end
local limit = tonumber(ARGV[2])
if limit > 0 then
  local len = redis.call('XLEN', KEYS[1])
  if len >= limit then
    return redis.error_reply('BACKLOG ' .. len)
  end
end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
if #KEYS > 1 then
  redis.call('SET', KEYS[2], id, 'NX', 'PX', ARGV[1])
end
return {id, 0}

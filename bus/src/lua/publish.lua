-- Publish a batch of events to one stream in one atomic step: per event an optional idempotency
-- key, and the hard backlog limit checked against the running length.
-- KEYS[1] = stream; KEYS[2..] = the idempotency keys used by the batch
-- ARGV[1] = idempotency TTL in ms; ARGV[2] = backlog limit (0 = none); ARGV[3] = 1 to renew the
-- TTL of a key that already exists (durability `replicated`/`fsync`: see below), else 0;
-- then per event: key index into KEYS (0 = no key), the number of field/value items n, the n items.
-- Returns one reply per event: {entry id, 1 if its key already existed (nothing written) else 0},
-- or {false, length} for an event refused by the backlog limit (it and every later one).
local ttl = ARGV[1]
local limit = tonumber(ARGV[2])
local renew = ARGV[3] == '1'
local len = -1
if limit > 0 then
  len = redis.call('XLEN', KEYS[1])
end
local out = {}
local i = 4
while i <= #ARGV do
  local key_index = tonumber(ARGV[i])
  local n = tonumber(ARGV[i + 1])
  local first = i + 2
  i = first + n
  local existing = false
  if key_index > 0 then
    existing = redis.call('GET', KEYS[key_index])
  end
  if existing then
    if renew then
      -- A write, so this connection's replication offset reaches the master's, past the write
      -- that set the key (made earlier, maybe on a connection lost since): the WAIT/WAITAOF
      -- that follows then covers that write too, instead of returning at once.
      redis.call('PEXPIRE', KEYS[key_index], ttl)
    end
    out[#out + 1] = {existing, 1}
  elseif limit > 0 and len >= limit then
    out[#out + 1] = {false, len}
  else
    local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, first, first + n - 1))
    if key_index > 0 then
      redis.call('SET', KEYS[key_index], id, 'PX', ttl)
    end
    if len >= 0 then
      len = len + 1
    end
    out[#out + 1] = {id, 0}
  end
end
return out

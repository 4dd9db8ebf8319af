#!lua flags=allow-oom
-- Re-read entries from this consumer's own PEL, one script call per entry: an entry still pending
-- on this consumer is claimed to itself WITHOUT JUSTID, which returns it and counts a delivery
-- (a re-read, as XREADGROUP .. 0 would); an entry no longer ours (claimed away or acknowledged)
-- is skipped, so nothing else is read. allow-oom: it adds nothing to memory.
-- KEYS[1] = stream; ARGV[1] = group; ARGV[2] = consumer; ARGV[3] = mode; ARGV[4] = id
--   mode 'id':    re-read exactly ARGV[4];
--   mode 'after': re-read the first entry pending on this consumer after ARGV[4] (the own-PEL
--                 walk after a (re)connect).
-- Returns {} when there is nothing to read, else {id, fields or false (deleted while pending:
-- XCLAIM dropped it from the PEL), deliveries}.
local id = ARGV[4]
local p
if ARGV[3] == 'after' then
  p = redis.call('XPENDING', KEYS[1], ARGV[1], '(' .. id, '+', 1, ARGV[2])
  if #p == 0 then
    return {}
  end
  id = p[1][1]
else
  p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 0 then
    return {}
  end
end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
if #claimed > 0 and claimed[1] then
  local after = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  return {id, claimed[1][2], after[1][4]}
end
return {id, false, p[1][4]}

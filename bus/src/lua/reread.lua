-- Re-read exactly these entries from this consumer's own PEL: an entry still pending on this
-- consumer is claimed to itself WITHOUT JUSTID, which returns it and counts a delivery (a re-read);
-- an entry no longer ours (claimed away or acknowledged) is skipped, so nothing else is read.
-- KEYS[1] = stream; ARGV[1] = group; ARGV[2] = consumer; ARGV[3..] = entry ids
-- Returns one {id, fields or false (deleted while pending), deliveries} per entry still ours.
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p > 0 then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
    if #claimed > 0 and claimed[1] then
      local after = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
      out[#out + 1] = {id, claimed[1][2], after[1][4]}
    else
      -- Deleted (trimmed) while pending: XCLAIM dropped it from the PEL.
      out[#out + 1] = {id, false, p[1][4]}
    end
  end
end
return out

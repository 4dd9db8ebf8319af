#!lua flags=allow-oom
-- Refresh the idle time of entries this consumer is still working on, so the idle reclaim does
-- not take in-flight work. Only entries still pending on this consumer are touched (XCLAIM to
-- itself with JUSTID resets the idle time and does not count a delivery). allow-oom: it writes
-- nothing new, and must keep working while Redis is out of memory.
-- KEYS[1] = stream; ARGV[1] = group; ARGV[2] = consumer; ARGV[3..] = entry ids
-- Returns the ids that were pending here but deleted from the stream (trimmed): XCLAIM drops
-- those from the pending list, so they are gone, not claimed away.
local gone = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    if #c == 0 then
      gone[#gone + 1] = ARGV[i]
    end
  end
end
return gone

-- Refresh the idle time of entries this consumer is still working on, so the idle reclaim does
-- not take in-flight work. Only entries still pending on this consumer are touched (XCLAIM to
-- itself with JUSTID resets idle time and does not count a delivery).
-- KEYS[1] = stream; ARGV[1] = group; ARGV[2] = consumer; ARGV[3..] = entry ids
-- Returns the number of entries touched.
local touched = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched

-- Ownership-checked emit + ACK: only if the entry is still pending on this consumer, XADD every
-- output and XACK the input, all in one step. MULTI/EXEC would not do: an XACK that acknowledges
-- nothing does not stop the XADDs.
-- KEYS[1] = input stream; KEYS[2..] = one output stream per output
-- ARGV[1] = group; ARGV[2] = consumer; ARGV[3] = entry id;
-- then per output: the number of field/value items n, followed by the n items.
-- Returns {1, output ids...} when written, {0} when the entry is no longer ours (NotOwner).
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 0 then
  return {0}
end
local out = {1}
local i = 4
for k = 2, #KEYS do
  local n = tonumber(ARGV[i])
  local args = {'XADD', KEYS[k], '*'}
  for j = 1, n do
    args[3 + j] = ARGV[i + j]
  end
  i = i + n + 1
  out[#out + 1] = redis.call(unpack(args))
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return out

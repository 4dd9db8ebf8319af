#!lua
-- Settle a batch of decided entries in one atomic step (the shebang makes Redis refuse the whole
-- script under OOM before it runs, instead of failing at its first XADD):
--   1. every output key must be a stream or absent (checked before any write: scripts are not
--      rolled back, so a WRONGTYPE after the first XADD would leave half a batch written);
--   2. which of the ids are still pending on this consumer: XPENDING over the batch's [min, max]
--      range for this consumer, paged to its end (an id is never reported not owned because a
--      COUNT cut it off);
--   3. the XADDs of the owned entries' outputs (results and dead letters), in batch order;
--   4. one XACK of every owned id (rejects included), after every XADD.
-- Nothing can fail after the first write. MULTI/EXEC would not do: an XACK that acknowledges
-- nothing does not stop the XADDs.
-- KEYS[1] = input stream; KEYS[2..] = output streams
-- ARGV[1] = group; ARGV[2] = consumer; ARGV[3] = min id; ARGV[4] = max id; ARGV[5] = entries m;
-- then per entry: its id, its number of outputs o, and per output: the index of its stream in
-- KEYS, the number of field/value items n, the n items.
-- Returns one integer per entry: 1 settled by us, 0 no longer ours (nothing written for it).
for k = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[k])['ok']
  if t ~= 'stream' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE output key ' .. KEYS[k] .. ' holds a ' .. t .. ', not a stream; nothing was written')
  end
end

local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local m = tonumber(ARGV[5])
local owned = {}
local from = ARGV[3]
while true do
  local rows = redis.call('XPENDING', stream, group, from, ARGV[4], m, consumer)
  for _, row in ipairs(rows) do
    owned[row[1]] = true
  end
  if #rows < m or rows[#rows][1] == ARGV[4] then
    break
  end
  from = '(' .. rows[#rows][1]
end

local out = {}
local acks = {}
local i = 6
for e = 1, m do
  local id = ARGV[i]
  local o = tonumber(ARGV[i + 1])
  i = i + 2
  local mine = owned[id] == true
  for _ = 1, o do
    local k = tonumber(ARGV[i])
    local n = tonumber(ARGV[i + 1])
    if mine then
      redis.call('XADD', KEYS[k], '*', unpack(ARGV, i + 2, i + 1 + n))
    end
    i = i + 2 + n
  end
  if mine then
    acks[#acks + 1] = id
    out[e] = 1
  else
    out[e] = 0
  end
end
for j = 1, #acks, 1000 do
  redis.call('XACK', stream, group, unpack(acks, j, math.min(j + 999, #acks)))
end
return out

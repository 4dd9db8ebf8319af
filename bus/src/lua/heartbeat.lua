#!lua flags=allow-oom
-- Write or refresh a consumer's heartbeat key. allow-oom: a consumer must be able to start and
-- stay alive while Redis is out of memory (reads and acknowledgements still work then), and the
-- key is a few bytes.
-- KEYS[1] = heartbeat key; ARGV[1] = TTL in ms
-- Returns 1 when the key existed and was refreshed, 0 when it was written anew.
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 1 then
  return 1
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return 0

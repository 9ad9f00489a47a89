-- Lists a run as waiting for a permit, unless a permit came free since it was refused one (then
-- the caller asks again at once). The caller has moved its message to the delayed set, due
-- at the latest moment it would be asked again anyway; a release moves it to now.
--
-- KEYS[1]  the bucket's holders   (NS:{l:NAME}:held[:KEY])
-- KEYS[2]  the bucket's waiters   (NS:{l:NAME}:waiting[:KEY])
-- ARGV[1]  now (ms)
-- ARGV[2]  the concurrency
-- ARGV[3]  the waiter: `QUEUE\nPAYLOAD`
--
-- Returns: 1 when listed, 0 when a permit is free now.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  return 0
end
-- Listed once: a run parked again (its wait ran out, the permits were still held) is not
-- listed twice.
redis.call('LREM', KEYS[2], 0, ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], 86400000)
return 1

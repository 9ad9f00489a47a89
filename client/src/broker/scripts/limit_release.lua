-- Gives back a concurrency permit and hands the caller the first run waiting for one.
--
-- KEYS[1]  the bucket's holders   (NS:{l:NAME}:held[:KEY]; zset `TASK_ID:TRIED` -> lease end ms)
-- KEYS[2]  the bucket's waiters   (NS:{l:NAME}:waiting[:KEY]; list of `QUEUE\nPAYLOAD`)
-- ARGV[1]  the holder (`TASK_ID:TRIED`), or empty: only hand over the next waiter (the one handed over before
--          had already left the delayed set)
--
-- Returns: the first waiter (the caller moves its message from the delayed set to now), or
-- false when none waits or the permit was not held.
if ARGV[1] ~= '' and redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return false
end
return redis.call('LPOP', KEYS[2])

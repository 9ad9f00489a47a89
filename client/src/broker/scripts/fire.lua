-- Fires one schedule: publishes its runs and stores its next time, in one atomic step, and
-- only for the beat holding the lease with this fencing token, and only if the schedule is
-- still due at the time this beat read: so no run is ever published twice.
--
-- KEYS[1]  the lease                 (NS:{s}:leader)
-- KEYS[2]  due times                 (NS:{s}:due, zset: name -> next fire ms)
-- KEYS[3]  schedules                 (NS:{s}:schedules, hash: name -> Schedule)
-- KEYS[4]  the target stream         (the queue's stream, or the broadcast stream)
-- ARGV[1]  "BEAT_ID:TOKEN" of the caller
-- ARGV[2]  schedule name
-- ARGV[3]  the due time the caller read (ms)
-- ARGV[4]  the next due time (ms), or "" when the schedule has no more times
-- ARGV[5]  the schedule, updated (last fired time)
-- ARGV[6]  approximate MAXLEN of the target stream, or "0"
-- ARGV[7..] the messages to publish
--
-- Returns: 1 fired, 0 not due any more (already fired, changed, removed), -1 not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local due = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not due or tonumber(due) ~= tonumber(ARGV[3]) then
  return 0
end
for i = 7, #ARGV do
  if ARGV[6] ~= '0' then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'm', ARGV[i])
  else
    redis.call('XADD', KEYS[4], '*', 'm', ARGV[i])
  end
end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
return 1

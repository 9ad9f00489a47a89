-- Claims one firing of a schedule: stores its next time and puts its messages in the outbox,
-- in one atomic step, only for the beat holding the lease with this fencing token, and only
-- if the schedule is still due at the time this beat read. Publishing is a second step
-- (publish_fired.lua, in the target queue's slot, so it works on Redis Cluster); a beat that
-- dies in between leaves the messages in the outbox for the next leader to publish.
--
-- KEYS[1]  the lease                 (NS:{s}:leader)
-- KEYS[2]  due times                 (NS:{s}:due, zset: name -> next fire ms)
-- KEYS[3]  schedules                 (NS:{s}:schedules, hash: name -> Schedule)
-- KEYS[4]  the outbox                (NS:{s}:outbox, hash: firing -> messages to publish)
-- KEYS[5]  run counts                (NS:{s}:runs, hash: fired / missed -> count)
-- ARGV[1]  "BEAT_ID:TOKEN" of the caller
-- ARGV[2]  schedule name
-- ARGV[3]  the due time the caller read (ms)
-- ARGV[4]  the next due time (ms), or "" when the schedule has no more times
-- ARGV[5]  the schedule, updated (last fired time)
-- ARGV[6]  the outbox field of this firing ("NAME@DUE_MS")
-- ARGV[7]  the outbox value (the target queue and its messages)
-- ARGV[8]  how many runs this firing publishes
-- ARGV[9]  how many missed runs its missed-run policy skips
--
-- Returns: 1 claimed, 0 not due any more (already fired, changed, removed), -1 not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local due = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not due or tonumber(due) ~= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
if tonumber(ARGV[8]) > 0 then
  redis.call('HINCRBY', KEYS[5], 'fired', ARGV[8])
end
if tonumber(ARGV[9]) > 0 then
  redis.call('HINCRBY', KEYS[5], 'missed', ARGV[9])
end
return 1

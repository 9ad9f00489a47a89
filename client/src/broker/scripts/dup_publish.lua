-- Publishes a message under an on_duplicate policy, atomically with the check.
--
-- KEYS[1]  the queue stream                 (NS:{q:NAME}:stream)
-- KEYS[2]  the dedup state of (task, args)  (NS:{q:NAME}:dup:KEY, hash: holder, queued)
-- KEYS[3]  optional: the queue's delayed set (NS:{q:NAME}:delayed), for a delayed copy
-- ARGV[1]  policy: discard | serial | queue_one
-- ARGV[2]  the message bytes
-- ARGV[3]  TTL of the dedup state, ms (a safety net if its holder is lost)
-- ARGV[4]  optional, with KEYS[3]: when the copy is due (ms); it waits in the delayed set
-- ARGV[5]  optional, with KEYS[3]: the state's TTL then (the wait plus ARGV[3])
--
-- Returns: 1 when published, 0 when discarded as a duplicate. A delayed copy counts as
-- queued from now, as an immediate one does.
local holder = redis.call('HGET', KEYS[2], 'holder')
local queued = tonumber(redis.call('HGET', KEYS[2], 'queued') or '0')
if ARGV[1] == 'discard' and (holder or queued > 0) then
  return 0
end
if ARGV[1] == 'queue_one' and queued > 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'queued', 1)
if KEYS[3] then
  redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[5]), redis.call('PTTL', KEYS[2])))
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  return 1
end
redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[3]), redis.call('PTTL', KEYS[2])))
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
return 1

-- Publishes a message under an on_duplicate policy, atomically with the check.
--
-- KEYS[1]  the queue stream                 (NS:{q:NAME}:stream)
-- KEYS[2]  the dedup state of (task, args)  (NS:{q:NAME}:dup:KEY, hash: holder, queued)
-- ARGV[1]  policy: discard | serial | queue_one
-- ARGV[2]  the message bytes
-- ARGV[3]  TTL of the dedup state, ms (a safety net if its holder is lost)
--
-- Returns: 1 when published, 0 when discarded as a duplicate.
local holder = redis.call('HGET', KEYS[2], 'holder')
local queued = tonumber(redis.call('HGET', KEYS[2], 'queued') or '0')
if ARGV[1] == 'discard' and (holder or queued > 0) then
  return 0
end
if ARGV[1] == 'queue_one' and queued > 0 then
  return 0
end
redis.call('HINCRBY', KEYS[2], 'queued', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
return 1

-- The holder of an on_duplicate state ended for good: release it, and queue the next parked
-- message if there is one.
--
-- KEYS[1]  the queue stream                 (NS:{q:NAME}:stream)
-- KEYS[2]  the dedup state                  (NS:{q:NAME}:dup:KEY)
-- KEYS[3]  parked messages                  (NS:{q:NAME}:dup:KEY:parked)
-- ARGV[1]  task id that ended
--
-- Returns: 1 when a parked message was queued, else 0.
if redis.call('HGET', KEYS[2], 'holder') ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[2], 'holder')
local next = redis.call('LPOP', KEYS[3])
if next then
  redis.call('XADD', KEYS[1], '*', 'm', next)
  return 1
end
if tonumber(redis.call('HGET', KEYS[2], 'queued') or '0') <= 0 then
  redis.call('DEL', KEYS[2])
end
return 0

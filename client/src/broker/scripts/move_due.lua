-- Moves delayed messages that are due from a queue's delayed set to its stream. Atomic, so
-- every worker may run it at once: each message is moved exactly once.
--
-- KEYS[1]  the queue's delayed set   (NS:{q:NAME}:delayed, score = due ms)
-- KEYS[2]  the queue's stream        (NS:{q:NAME}:stream)
-- ARGV[1]  now, ms since the epoch
-- ARGV[2]  most messages to move in this call
-- ARGV[3]  approximate MAXLEN of the stream, or 0 for none (broadcasts are capped)
--
-- Returns: {moved, next due ms or -1 when the set is empty}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, message in ipairs(due) do
  if ARGV[3] ~= '0' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'm', message)
  else
    redis.call('XADD', KEYS[2], '*', 'm', message)
  end
  redis.call('ZREM', KEYS[1], message)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then
  return {#due, tonumber(next[2])}
end
return {#due, -1}

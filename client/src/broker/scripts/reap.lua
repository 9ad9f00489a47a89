-- Reaps one entry held by a lost consumer: only if it is still pending for that consumer, so
-- that many reapers at once reap it once, and a consumer that came back keeps its claim.
--
-- KEYS[1]  the stream           (NS:{q:NAME}:stream, or the broadcast stream)
-- ARGV[1]  consumer group
-- ARGV[2]  entry id
-- ARGV[3]  the lost consumer
-- ARGV[4]  the message to queue again, or "" to drop it (recorded lost by the caller)
-- ARGV[5]  "1" to delete the entry after acknowledging it (not for broadcasts)
--
-- Returns: 1 when this call reaped it, 0 when it was no longer the lost consumer's.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #pending == 0 then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[4])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1

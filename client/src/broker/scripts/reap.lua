-- Reaps one entry held by a lost consumer: only if it is still pending for that consumer, so
-- that many reapers at once reap it once, and a consumer that came back keeps its claim.
--
-- KEYS[1]  the stream           (NS:{q:NAME}:stream, or the broadcast stream)
-- KEYS[2]  its dead letters     (NS:{q:NAME}:dead)
-- ARGV[1]  consumer group
-- ARGV[2]  entry id
-- ARGV[3]  the lost consumer
-- ARGV[4]  its fate: "requeue" (queue ARGV[6] again), "drop" (recorded by the caller) or
--          "dead" (a dead letter of the fields ARGV[8..], trimmed to ARGV[6] entries and
--          MINID ARGV[7]: bytes that do not open are kept, never dropped)
-- ARGV[5]  "1" to delete the entry after acknowledging it (not for broadcasts)
-- ARGV[6]  requeue: the message to queue; dead: most dead letters kept
-- ARGV[7]  dead: oldest dead letter kept (MINID)
-- ARGV[8..] dead: the dead letter's fields, name, value, ...
--
-- Returns: 1 when this call reaped it, 0 when it was no longer the lost consumer's.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #pending == 0 then
  return 0
end
if ARGV[4] == 'requeue' then
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[6])
elseif ARGV[4] == 'dead' then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', unpack(ARGV, 8))
  redis.call('XTRIM', KEYS[2], 'MINID', ARGV[7])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1

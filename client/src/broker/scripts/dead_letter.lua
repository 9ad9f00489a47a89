-- Moves one entry that cannot be run (bytes that do not decode, a refused signature) from a
-- queue stream to the queue's dead letters, and acknowledges it. Atomic, so the entry is never
-- both lost and acknowledged, nor dead-lettered twice. The fields and the trim rule are the
-- ones every dead letter gets (dead_letters.rs).
--
-- KEYS[1]  the queue stream           (NS:{q:NAME}:stream)
-- KEYS[2]  the queue's dead letters   (NS:{q:NAME}:dead)
-- ARGV[1]  consumer group
-- ARGV[2]  entry id in the queue stream
-- ARGV[3]  "1" to delete the entry from the queue stream after acking (not for broadcasts)
-- ARGV[4]  most dead letters kept (MAXLEN)
-- ARGV[5]  oldest dead letter kept: lower entry ids are trimmed (MINID, ms since the epoch)
-- ARGV[6..] the dead letter's fields: name, value, name, value, ...
--
-- Returns: the dead-letter entry id.
local dead_id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*', unpack(ARGV, 6))
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return dead_id

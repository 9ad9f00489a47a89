-- Moves one undecodable or refused entry from a queue stream to the queue's dead letters.
-- Atomic, so the entry is never both lost and acknowledged, nor dead-lettered twice.
--
-- KEYS[1]  the queue stream           (NS:{q:NAME}:stream)
-- KEYS[2]  the queue's dead letters   (NS:{q:NAME}:dead)
-- ARGV[1]  consumer group
-- ARGV[2]  entry id in the queue stream
-- ARGV[3]  reason (one line)
-- ARGV[4]  the raw message bytes
-- ARGV[5]  now, ms since the epoch
-- ARGV[6]  cap of the dead-letter stream (approximate MAXLEN)
-- ARGV[7]  "1" to delete the entry from the queue stream after acking (not for broadcasts)
--
-- Returns: the dead-letter entry id.
local dead_id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'reason', ARGV[3], 'raw', ARGV[4], 'source_id', ARGV[2], 'dead_at', ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[7] == '1' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return dead_id

-- Moves a stream entry that arrived before its `eta` to the queue's delayed set, atomically:
-- it is never both delayed and pending, nor lost between them. Run again, it changes nothing
-- (the delayed set holds the payload once).
--
-- KEYS[1]  the queue's stream         (NS:{q:NAME}:stream)
-- KEYS[2]  the queue's delayed set    (NS:{q:NAME}:delayed)
-- ARGV[1]  the consumer group that read it
-- ARGV[2]  the entry id
-- ARGV[3]  the message's eta (ms since the epoch): its score
-- ARGV[4]  the payload, as read (signed bytes stay signed)
--
-- Returns: 1.
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1

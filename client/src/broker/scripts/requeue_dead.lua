-- Moves one dead letter back to its queue's stream, atomically: it is never both queued and
-- still dead, nor queued twice.
--
-- KEYS[1]  the queue's dead letters   (NS:{q:NAME}:dead)
-- KEYS[2]  the queue's stream         (NS:{q:NAME}:stream)
-- ARGV[1]  the dead letter's entry id
-- ARGV[2]  the message to queue (the dead one, its retry budget reset)
--
-- Returns: the new stream entry id, or false when the dead letter is gone.
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return false
end
return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])

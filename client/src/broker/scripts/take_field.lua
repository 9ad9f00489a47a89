-- Takes one field out of a hash, atomically: its value is returned to one caller only (a
-- failed task's kept message, retried once however many operators click).
--
-- KEYS[1]  the hash              (NS:{t:ID}:record)
-- ARGV[1]  the field             (message)
--
-- Returns: the field's value, or false when it is not there.
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return value

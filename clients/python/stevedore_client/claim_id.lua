-- Claims a task id the caller chose (`PublishOptions::id`, `enqueue --id`) before its message
-- is published: an id is used once. Refused when the id was claimed before, or when a task of
-- that id already has a record (published before claims existed, or by a foreign client).
--
-- KEYS[1]  the id's claim     (NS:{t:ID}:claim)
-- KEYS[2]  the task's record  (NS:{t:ID}:record)
-- ARGV[1]  how long the claim lasts, ms (the record TTL: a day)
--
-- Returns: 1 when claimed now, 0 when the id is taken.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return 1
end
return 0

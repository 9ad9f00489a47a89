-- A worker reached a message published under an on_duplicate policy: run it, or park it
-- behind the run that holds its (task, args).
--
-- KEYS[1]  the queue stream                 (NS:{q:NAME}:stream)
-- KEYS[2]  the dedup state                  (NS:{q:NAME}:dup:KEY)
-- KEYS[3]  messages parked behind the holder (NS:{q:NAME}:dup:KEY:parked, list)
-- ARGV[1]  policy
-- ARGV[2]  task id
-- ARGV[3]  consumer group
-- ARGV[4]  stream entry id
-- ARGV[5]  the message bytes
-- ARGV[6]  TTL of the dedup state, ms
--
-- Returns: 1 to run it, 0 when parked (the entry is acknowledged and deleted).
local holder = redis.call('HGET', KEYS[2], 'holder')
if holder and holder ~= ARGV[2] and ARGV[1] ~= 'discard' then
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[6])
  redis.call('XACK', KEYS[1], ARGV[3], ARGV[4])
  redis.call('XDEL', KEYS[1], ARGV[4])
  return 0
end
if holder ~= ARGV[2] then
  local queued = tonumber(redis.call('HGET', KEYS[2], 'queued') or '0')
  if queued > 0 then
    redis.call('HINCRBY', KEYS[2], 'queued', -1)
  end
end
redis.call('HSET', KEYS[2], 'holder', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1

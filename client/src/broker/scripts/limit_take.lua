-- Asks a cluster-wide limit whether a run may start now: a concurrency permit first, then the
-- rate (GCRA with reservations: a run over the rate is given the moment it may start, and the
-- limit's clock moves past it, so runs waiting for the rate come back one per interval, never
-- as a herd). Atomic: two nodes asking at once never both get the last permit or slot.
--
-- KEYS[1]  the limit's definition      (NS:{l:NAME}:def; read only when ARGV[3] is empty)
-- KEYS[2]  the bucket's clock          (NS:{l:NAME}:tat[:KEY]; theoretical arrival time, ms)
-- KEYS[3]  the bucket's holders        (NS:{l:NAME}:held[:KEY]; zset holder -> lease end ms)
-- KEYS[4]  the limit's passes          (NS:{l:NAME}:passes; zset holder -> reserved ms)
-- ARGV[1]  now (ms)
-- ARGV[2]  the holder: one attempt of one task, `TASK_ID:TRIED`
-- ARGV[3]  the task's own limit as `count,per_ms,burst,concurrency` (0 = none), or empty:
--          a named limit, read from KEYS[1]
-- ARGV[4]  the lease end of a permit taken now (ms)
--
-- Returns: {'run', 1} holding a permit, {'run', 0} without one (no concurrency); {'later', MS}: over the rate, may start at MS (a pass is kept for it);
-- {'wait', N}: none of the N permits is free (the caller parks the message, then lists it as
-- a waiter with limit_wait.lua);
-- {'undefined', 0}: the named limit does not exist.
local now = tonumber(ARGV[1])
local id = ARGV[2]
local count, per, burst, conc
if ARGV[3] == '' then
  local def = redis.call('HMGET', KEYS[1], 'count', 'per_ms', 'burst', 'concurrency')
  if not def[1] and not def[4] then
    return {'undefined', 0}
  end
  count, per = tonumber(def[1]) or 0, tonumber(def[2]) or 0
  burst, conc = tonumber(def[3]) or 1, tonumber(def[4]) or 0
else
  local parts = {}
  for part in string.gmatch(ARGV[3], '[^,]+') do
    parts[#parts + 1] = tonumber(part)
  end
  count, per, burst, conc = parts[1], parts[2], parts[3], parts[4]
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if not redis.call('ZSCORE', KEYS[3], id) and redis.call('ZCARD', KEYS[3]) >= conc then
    return {'wait', conc}
  end
end
if count > 0 and per > 0 then
  if redis.call('ZSCORE', KEYS[4], id) then
    redis.call('ZREM', KEYS[4], id)
  else
    local interval = per / count
    local tau = interval * (math.max(burst, 1) - 1)
    local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
    local allow_at = tat - tau
    local next_tat = tat + interval
    local ttl = math.ceil(next_tat - now + tau) + 1000
    redis.call('SET', KEYS[2], string.format('%.3f', next_tat), 'PX', ttl)
    if allow_at > now then
      redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 86400000)
      redis.call('ZADD', KEYS[4], allow_at, id)
      return {'later', math.ceil(allow_at)}
    end
  end
end
if conc > 0 then
  redis.call('ZADD', KEYS[3], ARGV[4], id)
  return {'run', 1}
end
return {'run', 0}

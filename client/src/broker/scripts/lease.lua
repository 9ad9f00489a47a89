-- Takes or renews the beat leader lease, with a fencing token.
--
-- KEYS[1]  the lease            (NS:{s}:leader = "BEAT_ID:TOKEN", expires)
-- KEYS[2]  the fencing counter  (NS:{s}:fence)
-- ARGV[1]  this beat's id
-- ARGV[2]  lease length, ms
--
-- Returns: this beat's token while it leads (a new one when it just took the lease), 0 when
-- another beat holds it.
local holder = redis.call('GET', KEYS[1])
if holder then
  local id, token = string.match(holder, '^(.*):(%d+)$')
  if id == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token

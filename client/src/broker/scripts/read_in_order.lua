-- Reads new entries for one consumer of a group from the streams in KEYS, in that order,
-- until `count` entries are read in all: a worker's non-blocking read of its queues by
-- priority in one round trip (a multi-stream XREADGROUP would take `count` from each stream,
-- more than the worker has slots for; one XREADGROUP per stream costs a round trip each).
--
-- KEYS     the streams, highest priority first (all in one slot)
-- ARGV[1]  the group
-- ARGV[2]  the consumer
-- ARGV[3]  most entries to read in all
--
-- Returns: what XREADGROUP returns, {{stream, {{id, {field, value, ...}}, ...}}, ...}, for the
-- streams it read entries from (empty when none had new ones). A stream that refuses (no
-- group yet) ends the read: with entries already read they are returned, so none is left
-- pending unseen; otherwise the refusal is the script's error.
local wanted = tonumber(ARGV[3])
local found = {}
for _, stream in ipairs(KEYS) do
  local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', wanted,
    'STREAMS', stream, '>')
  if type(read) == 'table' and read.err then
    if #found > 0 then
      return found
    end
    return read
  end
  if read then
    local entries = read[1][2]
    found[#found + 1] = {stream, entries}
    wanted = wanted - #entries
    if wanted <= 0 then
      break
    end
  end
end
return found

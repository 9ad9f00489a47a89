-- Writes a reaper's verdict on a lost run into its task's record: the attempt's own field
-- always, the task's current field only when it does not hold a later attempt already (the
-- requeued next attempt may have run, and been recorded, before this verdict arrives).
--
-- KEYS[1]  the task's record    (NS:{t:ID}:record)
-- ARGV[1]  the current field    (task, or node:NAME for a broadcast)
-- ARGV[2]  the verdict          (an encoded run record)
-- ARGV[3]  its attempt number
-- ARGV[4]  time to live (ms)
-- ARGV[5]  the attempt's field, or "" for none
--
-- Returns: 1 when the current field was written, 0 when it holds a later attempt.
local written = 0
local current = redis.call('HGET', KEYS[1], ARGV[1])
local later = false
if current then
  -- A compact run is an array (attempt 5th); one written by an older worker, a map.
  local ok, run = pcall(cmsgpack.unpack, current)
  local attempt = ok and type(run) == 'table' and (run.attempt or run[5])
  later = type(attempt) == 'number' and attempt > tonumber(ARGV[3])
end
if not later then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  written = 1
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[5], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return written

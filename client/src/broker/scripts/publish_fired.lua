-- Publishes the runs of a claimed firing, each at most once: a run's marker is set with its
-- first publish, so a firing published again (a new leader emptying the outbox after the
-- old one died between publishing and clearing it) adds nothing twice.
--
-- KEYS[1]     the target stream       (the queue's stream, or the broadcast stream)
-- KEYS[2..]   one marker per run      (NS:{q:NAME}:fired:RUN_ID, same slot as KEYS[1])
-- ARGV[1]     approximate MAXLEN of the target stream, or "0"
-- ARGV[2]     how long a marker lives (ms)
-- ARGV[3..]   the messages, in the order of the markers
--
-- Returns the number of runs published now.
local published = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[2]) then
    if ARGV[1] ~= '0' then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i + 1])
    else
      redis.call('XADD', KEYS[1], '*', 'm', ARGV[i + 1])
    end
    published = published + 1
  end
end
return published

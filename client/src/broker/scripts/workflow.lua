-- The one atomic step of a workflow: starts it, joins a step's outcome, sweeps or cancels it.
-- Every key is the workflow's (one hash tag, one slot). What becomes ready goes to the outbox
-- here and is returned; the caller publishes it (publish_fired.lua, once per step id thanks to
-- its marker) and then removes it from the outbox. A caller that dies in between leaves it in
-- the outbox for a redelivered step's join or the sweeper, so nothing ready is lost and
-- nothing is published twice.
--
-- The graph (KEYS[1]) holds, per node IDX: field IDX = the node as JSON
--   {"k": "t" task | "g" group | "c" chain, "p": parent IDX or -1, "i": position in a chain
--    parent (from 1), "c": [children] of a chain, "n": member count of a group, "s" / "f" /
--    "a": the on_success / on_failure / always link's IDX, "im": true if the step ignores
--    its input, "id": the task id of a task step};
-- field m:IDX = a group's members as a JSON array; field t:IDX = a task step's sealed message.
-- The state (KEYS[2]): s:IDX = q (started) | ok | failed | cancelled; r:IDX = its result and
-- e:IDX = its error (MessagePack); n:IDX = a group's members succeeded; o = task steps started
-- and not ended; status = running | succeeded | failed | cancelled; cancelled = 1 once asked.
--
-- KEYS[1]  the graph               (NS:{w:ID}:graph, hash)
-- KEYS[2]  the state               (NS:{w:ID}:state, hash)
-- KEYS[3]  the outbox              (NS:{w:ID}:outbox, hash: step IDX -> its input or "")
-- KEYS[4]  the done list           (NS:{w:ID}:done, one token per time the workflow ended)
-- ARGV[1]  what to do: start | step | sweep | cancel
-- ARGV[2]  how long the workflow's keys live from now (ms)
-- ARGV[3]  step: a step's IDX         } repeated for every step of this workflow ended in
-- ARGV[4]  step: 1 succeeded, 0 not   } the caller's batch, joined in order in this one
-- ARGV[5]  step: its result, or its error map (MessagePack)   run
-- ARGV[6]  step: the task id of the run (joined only when it is the step's own)
--
-- Returns {status, IDX, message, input, IDX, message, input, ...}: the steps to publish (the
-- new ones; every one in the outbox for a sweep or a step joined before). cancel returns
-- {status, ID, ID, ...}: the task ids of the steps started and not ended. A workflow whose
-- graph is gone returns {"gone"}.
local graph, state, outbox, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode = ARGV[1]
if redis.call('EXISTS', graph) == 0 then
  return {'gone'}
end
local cancelled = redis.call('HEXISTS', state, 'cancelled') == 1
-- The steps to publish: {IDX, input}; the change of the count of task steps running.
local ready = {}
local delta = 0
local nodes = {}

-- Node i, decoded once per run (a batch's members share their group).
local function node(i)
  i = tostring(i)
  local n = nodes[i]
  if not n then
    n = cjson.decode(redis.call('HGET', graph, i))
    nodes[i] = n
  end
  return n
end

-- A MessagePack array header for n elements.
local function array_header(n)
  if n < 16 then
    return string.char(0x90 + n)
  elseif n < 65536 then
    return string.char(0xdc, math.floor(n / 256), n % 256)
  end
  return string.char(0xdd, math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

-- What an `always` link receives: {"state": ..., "result" | "error": ...}.
local function outcome_map(ok, bytes)
  if ok then
    return '\130\165state\169succeeded\166result' .. bytes
  end
  return '\130\165state\166failed\165error' .. bytes
end

local start
local complete

start = function(i, input)
  if cancelled then
    return
  end
  local n = node(i)
  if n.im then
    input = ''
  end
  redis.call('HSET', state, 's:' .. i, 'q')
  if n.k == 't' then
    redis.call('HSET', outbox, tostring(i), input)
    delta = delta + 1
    ready[#ready + 1] = {i, input}
  elseif n.k == 'g' then
    local members = cjson.decode(redis.call('HGET', graph, 'm:' .. i))
    for _, m in ipairs(members) do
      start(m, input)
    end
  else
    start(n.c[1], input)
  end
end

-- Node i ended (ok, with bytes its result or its error). Returns false when that was known,
-- else true and the node's state before.
complete = function(i, n, ok, bytes)
  local before = redis.call('HGET', state, 's:' .. i)
  if before == 'ok' or (not ok and before == 'failed') then
    return false
  end
  redis.call('HSET', state, 's:' .. i, ok and 'ok' or 'failed', (ok and 'r:' or 'e:') .. i, bytes)
  if ok and n.s then
    start(n.s, bytes)
  elseif not ok and n.f then
    start(n.f, bytes)
  end
  if n.a and before ~= 'failed' then
    start(n.a, outcome_map(ok, bytes))
  end
  if n.p < 0 then
    return true, before
  end
  local parent = node(n.p)
  if parent.k == 'g' and ok then
    if redis.call('HINCRBY', state, 'n:' .. n.p, 1) == parent.n then
      local members = cjson.decode(redis.call('HGET', graph, 'm:' .. n.p))
      local parts = {array_header(#members)}
      for _, m in ipairs(members) do
        parts[#parts + 1] = redis.call('HGET', state, 'r:' .. m)
      end
      complete(n.p, parent, true, table.concat(parts))
    end
  elseif parent.k == 'c' and ok and n.i < #parent.c then
    start(parent.c[n.i + 1], bytes)
  else
    complete(n.p, parent, ok, bytes)
  end
  return true, before
end

-- Counts the task steps running, sets the status once none is left, and wakes the waiters.
local function settle_status()
  local left
  if delta ~= 0 then
    left = redis.call('HINCRBY', state, 'o', delta)
  else
    left = tonumber(redis.call('HGET', state, 'o') or '0')
  end
  local status = 'running'
  if left <= 0 then
    if cancelled then
      status = 'cancelled'
    elseif redis.call('HGET', state, 's:0') == 'ok' then
      status = 'succeeded'
    else
      status = 'failed'
    end
  end
  if redis.call('HGET', state, 'status') ~= status then
    redis.call('HSET', state, 'status', status)
    if status ~= 'running' then
      redis.call('RPUSH', done, '1')
      redis.call('PEXPIRE', done, ARGV[2])
    end
  end
  return status
end

-- What the outbox holds becomes the reply (the steps started here are in it too).
local function everything_in_outbox()
  ready = {}
  local fields = redis.call('HGETALL', outbox)
  for k = 1, #fields, 2 do
    ready[#ready + 1] = {fields[k], fields[k + 1]}
  end
end

-- Every key lives ARGV[2] ms from now; refreshed at most once a minute (half the TTL if
-- shorter: a join of a big group would otherwise pay four PEXPIREs), except the outbox,
-- given its TTL whenever a step is put in it, and the done list, whenever it is pushed.
local function expire_all()
  local ttl = tonumber(ARGV[2])
  if redis.call('PTTL', state) > ttl - math.min(60000, ttl / 2) then
    if #ready > 0 then
      redis.call('PEXPIRE', outbox, ARGV[2])
    end
    return
  end
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, ARGV[2])
  end
end

if mode == 'start' then
  if redis.call('HEXISTS', state, 's:0') == 0 then
    start(0, '')
  end
elseif mode == 'step' then
  local known = false
  for a = 3, #ARGV, 4 do
    -- Only the step's own run joins it: a message that merely carries the header (a forged
    -- or copied `workflow: ID:IDX`) names a task id the graph does not hold there, or a
    -- node that is not a task step, and is ignored.
    local i = ARGV[a]
    local n = redis.call('HEXISTS', graph, i) == 1 and node(i)
    if n and n.k == 't' and n.id == ARGV[a + 3] then
      local joined, before = complete(i, n, ARGV[a + 1] == '1', ARGV[a + 2])
      if joined and before == 'q' then
        delta = delta - 1
      elseif not joined then
        known = true
      end
    end
  end
  if known then
    everything_in_outbox()
  end
elseif mode == 'sweep' then
  everything_in_outbox()
elseif mode == 'cancel' then
  local status = redis.call('HGET', state, 'status')
  if status and status ~= 'running' then
    return {status}
  end
  cancelled = true
  redis.call('HSET', state, 'cancelled', '1')
  local ids = {}
  local fields = redis.call('HGETALL', state)
  for k = 1, #fields, 2 do
    local f, v = fields[k], fields[k + 1]
    if v == 'q' and string.sub(f, 1, 2) == 's:' then
      local n = node(string.sub(f, 3))
      if n.k == 't' then
        ids[#ids + 1] = n.id
      end
    end
  end
  -- Steps not published yet never will be: they end here, cancelled.
  for _, f in ipairs(redis.call('HKEYS', outbox)) do
    redis.call('HSET', state, 's:' .. f, 'cancelled')
    delta = delta - 1
  end
  redis.call('DEL', outbox)
  local reply = {settle_status()}
  expire_all()
  for _, id in ipairs(ids) do
    reply[#reply + 1] = id
  end
  return reply
end

local reply = {settle_status()}
expire_all()
for _, step in ipairs(ready) do
  reply[#reply + 1] = tostring(step[1])
  reply[#reply + 1] = redis.call('HGET', graph, 't:' .. step[1])
  reply[#reply + 1] = step[2]
end
return reply

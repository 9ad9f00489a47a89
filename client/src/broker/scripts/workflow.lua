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
-- ARGV[3]  step: the step's IDX
-- ARGV[4]  step: 1 succeeded, 0 ended otherwise
-- ARGV[5]  step: its result, or its error map (MessagePack)
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
local ready = {}

local function node(i)
  return cjson.decode(redis.call('HGET', graph, tostring(i)))
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
    redis.call('HINCRBY', state, 'o', 1)
    ready[#ready + 1] = i
  elseif n.k == 'g' then
    local members = cjson.decode(redis.call('HGET', graph, 'm:' .. i))
    for _, m in ipairs(members) do
      start(m, input)
    end
  else
    start(n.c[1], input)
  end
end

-- Node i ended (ok, with bytes its result or its error). Returns false when that was known.
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
    return true
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
  return true
end

-- Sets the status once no task step is left running, and wakes the waiters.
local function settle_status()
  local left = tonumber(redis.call('HGET', state, 'o') or '0')
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
    end
  end
  return status
end

local function everything_in_outbox()
  local fields = redis.call('HKEYS', outbox)
  for _, f in ipairs(fields) do
    ready[#ready + 1] = f
  end
end

local function expire_all()
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, ARGV[2])
  end
end

if mode == 'start' then
  if redis.call('HEXISTS', state, 's:0') == 0 then
    start(0, '')
  end
elseif mode == 'step' then
  local i = ARGV[3]
  local before = redis.call('HGET', state, 's:' .. i)
  local joined = complete(i, node(i), ARGV[4] == '1', ARGV[5])
  if joined and before == 'q' then
    redis.call('HINCRBY', state, 'o', -1)
  elseif not joined then
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
    redis.call('HINCRBY', state, 'o', -1)
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
for _, i in ipairs(ready) do
  local input = redis.call('HGET', outbox, tostring(i))
  if input then
    reply[#reply + 1] = tostring(i)
    reply[#reply + 1] = redis.call('HGET', graph, 't:' .. i)
    reply[#reply + 1] = input
  end
end
return reply

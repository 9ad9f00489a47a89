-- Deletes up to ARGV[2] entries of a queue's stream that no worker has read yet (after the
-- group's last delivered id), atomically against the workers' reads: a running (pending) task
-- is never touched. The caller repeats it until it returns 0.
--
-- KEYS[1]  the queue's stream         (NS:{q:NAME}:stream)
-- ARGV[1]  the queue group            (workers)
-- ARGV[2]  most entries to delete in this call
--
-- Returns: how many entries were deleted.
local start = '-'
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then
  return 0
end
for _, group in ipairs(groups) do
  local fields = {}
  for i = 1, #group, 2 do
    fields[group[i]] = group[i + 1]
  end
  if fields['name'] == ARGV[1] then
    start = '(' .. fields['last-delivered-id']
  end
end
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))
if #entries == 0 then
  return 0
end
-- In chunks: Lua's unpack takes a few thousand values at most.
local deleted, ids = 0, {}
for _, entry in ipairs(entries) do
  ids[#ids + 1] = entry[1]
  if #ids == 500 then
    deleted = deleted + redis.call('XDEL', KEYS[1], unpack(ids))
    ids = {}
  end
end
if #ids > 0 then
  deleted = deleted + redis.call('XDEL', KEYS[1], unpack(ids))
end
return deleted

-- Records one heartbeat, stamped with Redis's own clock (so nodes' clocks need not agree).
--
-- KEYS[1]  node descriptions   (NS:{h}:nodes, hash: consumer -> NodeBeat)
-- KEYS[2]  heartbeat times     (NS:{h}:beats, hash: consumer -> ms, Redis time)
-- ARGV[1]  the consumer name
-- ARGV[2]  the encoded NodeBeat
--
-- Returns: {Redis's time in ms, 1 if this consumer had a beat already (0: first beat, or its
-- beat was removed because peers declared it lost and reaped it)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local new = redis.call('HSET', KEYS[2], ARGV[1], now)
return {now, 1 - new}

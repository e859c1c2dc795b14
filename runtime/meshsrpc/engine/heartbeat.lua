-- Mesh heartbeat. KEYS[1] = heartbeats zset, ARGV[1] = instance id.
-- Guarantees: the score is the Redis server's clock in integer ms
-- (TIME: sec*1000 + floor(usec/1000)), never a node's local clock, so nodes with
-- skewed clocks expire each other fairly. Returns 1 when the member was newly
-- added (first beat, or the entry vanished, e.g. Redis restarted empty), else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now, ARGV[1])

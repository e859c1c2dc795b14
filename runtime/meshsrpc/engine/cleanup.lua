-- Expired-node cleanup (run by the leader after its own heartbeat).
-- KEYS[1] = heartbeats zset, KEYS[2] = nodes hash, ARGV[1] = node ttl in ms.
-- Guarantees: atomically removes every member whose last heartbeat is at or before
-- (Redis TIME in ms - ttl) from both keys and returns their ids; because it is one
-- script, each dead id is returned to exactly one caller, even with two leaders.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return expired

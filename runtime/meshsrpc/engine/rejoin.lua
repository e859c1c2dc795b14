-- Re-register a live node whose entries vanished (Redis restarted empty).
-- KEYS[1] = nodes hash, KEYS[2] = next_id counter, ARGV[1] = instance id, ARGV[2] = hostname.
-- Guarantees: the hostname is back, and the id counter is at least this node's id,
-- so a node starting after the data loss can never be handed a live node's id.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
end
return 1

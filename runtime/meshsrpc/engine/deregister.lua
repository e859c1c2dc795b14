-- Graceful leave. KEYS[1] = heartbeats zset, KEYS[2] = nodes hash, ARGV[1] = instance id.
-- Guarantees: the node disappears from both keys at once, so nobody ever sees it
-- half-registered (and the leader never reports a node that left on purpose).
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1

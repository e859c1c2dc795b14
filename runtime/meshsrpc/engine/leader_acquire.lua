-- Leader lock acquire. KEYS[1] = lock key, ARGV[1] = lock id, ARGV[2] = ttl in ms.
-- Guarantees: the lock is taken only if nobody holds it, and always with a PX ttl,
-- so a crashed holder frees it on its own. Returns 1 if taken, 0 if held by anyone.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1

-- Leader lock renewal. KEYS[1] = lock key, ARGV[1] = lock id, ARGV[2] = ttl in ms.
-- Guarantees: the ttl is extended only while the value is still our lock id; a lock
-- that expired and was taken by another node is never touched. Returns 1 or 0 (lost).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

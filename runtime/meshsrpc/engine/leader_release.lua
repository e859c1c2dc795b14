-- Leader lock release. KEYS[1] = lock key, ARGV[1] = lock id.
-- Guarantees: deletes the lock only if the value is our lock id, so a node that
-- already lost the lock never deletes its successor's. Returns 1 if deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

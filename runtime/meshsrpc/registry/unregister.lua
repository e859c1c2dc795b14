-- unregister: remove client ARGV[1] only if node ARGV[2] owns it.
-- Guarantees: a late unregister from a node the client already left (supersede,
-- reconnect elsewhere) never removes the new owner's entry. The client always leaves
-- this node's set, where it no longer belongs in either case.
--
-- KEYS[1] clients hash, KEYS[2] this node's client set
-- ARGV[1] clientId, ARGV[2] nodeId
-- Returns 1 when removed, 0 when absent or owned by another node.
local client_id, node_id = ARGV[1], tonumber(ARGV[2])
local removed = 0
local raw = redis.call('HGET', KEYS[1], client_id)
if raw then
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and entry.nodeId == node_id then
    redis.call('HDEL', KEYS[1], client_id)
    removed = 1
  end
end
redis.call('SREM', KEYS[2], client_id)
return removed

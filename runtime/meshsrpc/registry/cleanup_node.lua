-- cleanup_node: remove every client node ARGV[1] still owns, after it died or stopped.
-- Guarantees: members of the node's set that moved to another node are left alone
-- (their hash entry names the new owner); each removed client is returned with its
-- stored value, so exactly one caller ever gets a given orphan; the set is deleted.
-- Entries that cannot be parsed are left for the 24 h expiry (their owner is unknown).
--
-- KEYS[1] clients hash, KEYS[2] that node's client set
-- ARGV[1] nodeId
-- Returns {clientId1, value1, clientId2, value2, ...} of the removed clients.
local node_id = tonumber(ARGV[1])
local removed = {}
local members = redis.call('SMEMBERS', KEYS[2])
for _, client_id in ipairs(members) do
  local raw = redis.call('HGET', KEYS[1], client_id)
  if raw then
    local ok, entry = pcall(cjson.decode, raw)
    if ok and type(entry) == 'table' and entry.nodeId == node_id then
      redis.call('HDEL', KEYS[1], client_id)
      removed[#removed + 1] = client_id
      removed[#removed + 1] = raw
    end
  end
end
redis.call('DEL', KEYS[2])
return removed

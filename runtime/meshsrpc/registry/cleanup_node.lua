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
local doomed = {}

-- The owner of an entry. Every writer (this one and the TypeScript one) starts the
-- value with state and nodeId, so a pattern reads it without decoding the metadata;
-- anything else is decoded in full.
local function owner_of(raw)
  local head = string.match(raw, '^{"state":"%a+","nodeId":(%d+)[,}]')
  if head then
    return tonumber(head)
  end
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' then
    return entry.nodeId
  end
  return nil
end

local members = redis.call('SMEMBERS', KEYS[2])
for _, client_id in ipairs(members) do
  local raw = redis.call('HGET', KEYS[1], client_id)
  if raw and owner_of(raw) == node_id then
    doomed[#doomed + 1] = client_id
    removed[#removed + 1] = client_id
    removed[#removed + 1] = raw
  end
end
-- HDEL in batches: one call per client costs more than the lookups.
for i = 1, #doomed, 1000 do
  redis.call('HDEL', KEYS[1], unpack(doomed, i, math.min(i + 999, #doomed)))
end
redis.call('DEL', KEYS[2])
return removed

-- register: make node ARGV[2] the owner of client ARGV[1], in one atomic step.
-- Guarantees: with allowSupersede "0" and another owner, nothing changes and the
-- owner is reported; otherwise the client leaves the previous owner's set, the hash
-- value is rewritten with the new owner, state and connectedAt, the client joins this
-- node's set, and both keys get the 24 h safety-net expiry. No reader ever sees the
-- client in two node sets or the hash pointing at a node whose set lacks it.
-- The metadata text is spliced verbatim (the caller sends valid JSON), so user data is
-- never re-encoded by cjson (which would turn [] into {} and reorder keys).
--
-- KEYS[1] clients hash, KEYS[2] this node's client set
-- ARGV[1] clientId, ARGV[2] nodeId, ARGV[3] metadata JSON, ARGV[4] hasMetadata "1"/"0",
-- ARGV[5] node set prefix "<P>:mesh:<key>:node:", ARGV[6] connectedAt (ms),
-- ARGV[7] allowSupersede "1"/"0", ARGV[8] state "active"/"pending"
-- Returns {0} new or same node, {1, oldNodeId} superseded, {2, ownerNodeId} conflict.
local client_id, node_id, metadata, has_metadata = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local set_prefix, connected_at, allow_supersede, state = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

if not string.match(node_id, '^%-?%d+$') or not string.match(connected_at, '^%-?%d+$') then
  return redis.error_reply('register: nodeId and connectedAt must be integers')
end
if state ~= 'active' and state ~= 'pending' then
  return redis.error_reply('register: state must be active or pending')
end
if has_metadata ~= '1' then
  metadata = 'null'
end

local owner = nil
local raw = redis.call('HGET', KEYS[1], client_id)
if raw then
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and type(entry.nodeId) == 'number' then
    owner = entry.nodeId
  end
end

local result = {0}
if owner ~= nil and owner ~= tonumber(node_id) then
  if allow_supersede ~= '1' then
    return {2, owner}
  end
  redis.call('SREM', set_prefix .. string.format('%.0f', owner) .. ':clients', client_id)
  result = {1, owner}
end

local value = '{"state":"' .. state .. '","nodeId":' .. node_id .. ',"connectedAt":' ..
  connected_at .. ',"metadata":' .. metadata .. ',"hasMetadata":' ..
  (has_metadata == '1' and 'true' or 'false') .. '}'
redis.call('HSET', KEYS[1], client_id, value)
redis.call('SADD', KEYS[2], client_id)
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('EXPIRE', KEYS[2], 86400)
return result

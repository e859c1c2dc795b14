-- update_metadata: replace the metadata of client ARGV[1] only if node ARGV[2] owns it.
-- Guarantees: nodeId, connectedAt and state are kept; the metadata is spliced verbatim
-- (never re-encoded by cjson); the clients hash's 24 h safety-net expiry is refreshed.
-- Otherwise nothing changes.
--
-- KEYS[1] clients hash
-- ARGV[1] clientId, ARGV[2] nodeId, ARGV[3] metadata JSON, ARGV[4] hasMetadata "1"/"0"
-- Returns 1 when updated, 0 when absent or owned by another node.
local client_id, node_id, metadata, has_metadata = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not string.match(node_id, '^%-?%d+$') then
  return redis.error_reply('update_metadata: nodeId must be an integer')
end

local raw = redis.call('HGET', KEYS[1], client_id)
if not raw then
  return 0
end
local ok, entry = pcall(cjson.decode, raw)
if not ok or type(entry) ~= 'table' or entry.nodeId ~= tonumber(node_id)
    or type(entry.connectedAt) ~= 'number' then
  return 0
end
if has_metadata ~= '1' then
  metadata = 'null'
end
-- A missing state (older writers) means active.
local state = 'active'
if entry.state == 'pending' then
  state = 'pending'
end

local value = '{"state":"' .. state .. '","nodeId":' .. node_id .. ',"connectedAt":' ..
  string.format('%.0f', entry.connectedAt) .. ',"metadata":' .. metadata ..
  ',"hasMetadata":' .. (has_metadata == '1' and 'true' or 'false') .. '}'
redis.call('HSET', KEYS[1], client_id, value)
redis.call('EXPIRE', KEYS[1], 86400)
return 1

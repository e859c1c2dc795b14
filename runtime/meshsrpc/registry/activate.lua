-- activate: turn this node's pending reservation of client ARGV[1] into an active entry.
-- Guarantees: only if node ARGV[2] still owns the client (a supersede in between wins);
-- connectedAt is kept from the reservation; the metadata is replaced (spliced verbatim,
-- never re-encoded); both keys get the 24 h safety-net expiry. Otherwise nothing changes.
--
-- KEYS[1] clients hash, KEYS[2] this node's client set
-- ARGV[1] clientId, ARGV[2] nodeId, ARGV[3] metadata JSON, ARGV[4] hasMetadata "1"/"0"
-- Returns 1 when activated, 0 when this node does not own the client.
local client_id, node_id, metadata, has_metadata = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not string.match(node_id, '^%-?%d+$') then
  return redis.error_reply('activate: nodeId must be an integer')
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

local value = '{"state":"active","nodeId":' .. node_id .. ',"connectedAt":' ..
  string.format('%.0f', entry.connectedAt) .. ',"metadata":' .. metadata ..
  ',"hasMetadata":' .. (has_metadata == '1' and 'true' or 'false') .. '}'
redis.call('HSET', KEYS[1], client_id, value)
redis.call('SADD', KEYS[2], client_id)
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('EXPIRE', KEYS[2], 86400)
return 1

-- Shared by every script (prepended). KEYS[1] meta, KEYS[2] nodes, KEYS[3] names, KEYS[4] log,
-- all `chat:{ROOM}:*`, so that one hash tag puts the room in one cluster slot.
local meta, nodes, names, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix = string.sub(meta, 1, -5)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- 'OK'; 'RESET' when the room is not the one the node joined (Redis lost it); 'FENCED' when the
-- node's lease ran out or it was swept.
local function check(node, epoch)
  if redis.call('HGET', meta, 'epoch') ~= epoch then return 'RESET' end
  local expiry = redis.call('ZSCORE', nodes, node)
  if not expiry or tonumber(expiry) < now_ms() then return 'FENCED' end
  return 'OK'
end

-- Whether `node`'s connection `conn` holds the claim on `key`.
local function holds(key, node, conn)
  local claim = redis.call('HGET', names, key)
  if not claim then return false end
  local n, c = string.match(claim, '^(%d+):(%d+):')
  return n == node and c == conn
end

-- Appends one entry at the next position; the stream is trimmed to about `trim` entries.
local function append(trim, fields)
  local pos = redis.call('HINCRBY', meta, 'pos', 1)
  redis.call('XADD', log, 'MAXLEN', '~', trim, '*', 'pos', pos, unpack(fields))
  return pos
end

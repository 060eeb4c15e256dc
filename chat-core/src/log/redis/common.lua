-- Shared by every script (prepended). KEYS[1] meta, KEYS[2] nodes, KEYS[3] names, KEYS[4] log,
-- all `chat:{ROOM}:*`, so that one hash tag puts the room in one cluster slot.
local meta, nodes, names, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix = string.sub(meta, 1, -5)
-- Hash folded name -> the claim, a newline, and what the member's seat keeps: away, user and
-- real name, newline-separated, each '' for none or '+' and the text. Written beside the claim
-- (not in it, which older nodes read) and honoured only while it begins with the claim now held.
local seats = prefix .. 'seats'
-- Hash node -> 3 for the nodes that read renames and away entries (see register.lua).
local versions = prefix .. 'versions'

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

-- The name under which `node`'s connection `conn` holds the claim on `key`; nil if it does not.
local function holds(key, node, conn)
  local claim = redis.call('HGET', names, key)
  if not claim then return nil end
  local n, c, name = string.match(claim, '^(%d+):(%d+):(.*)$')
  if n == node and c == conn then return name end
  return nil
end

-- What the seat of the claim `claim` on `key` keeps: away, user, real name (each '' or '+...'),
-- all '' if nothing is kept for this claim.
local function seat_of(key, claim)
  local kept = redis.call('HGET', seats, key)
  if kept and string.sub(kept, 1, #claim + 1) == claim .. '\n' then
    local rest = string.sub(kept, #claim + 2)
    local away, user, real = string.match(rest, '^([^\n]*)\n([^\n]*)\n(.*)$')
    if away then return away, user, real end
  end
  return '', '', ''
end

local function keep_seat(key, claim, away, user, real)
  redis.call('HSET', seats, key, claim .. '\n' .. away .. '\n' .. user .. '\n' .. real)
end

-- Appends one entry at the next position; the stream is trimmed to about `trim` entries. Its
-- stream ID's milliseconds (Redis's clock, never going back in one stream) are its time.
local function append(trim, fields)
  local pos = redis.call('HINCRBY', meta, 'pos', 1)
  redis.call('XADD', log, 'MAXLEN', '~', trim, '*', 'pos', pos, unpack(fields))
  return pos
end

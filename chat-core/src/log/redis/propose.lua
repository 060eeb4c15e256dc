-- KEYS[5] members of this node. ARGV: node, epoch, trim, max members (used only if the room
-- holds none: the room's own cap, set by the node that created it, applies), deadline (Redis's time in
-- ms after which the node has given up waiting for the answer; 0 for none), then five per proposal, in
-- the order the node made them: kind ('join', 'chat' or 'leave'), conn, name, key, and the text
-- of a chat or the reason code of a leave ('' for a join). Runs them in that order, atomically,
-- so that a node's proposals cost one round trip per batch, not one each.
-- Returns 'EXPIRED' (past the deadline: nothing is done, as the node told its members), 'RESET'
-- or 'FENCED' for the whole batch, or one answer per proposal: 'OK', 'NAME_TAKEN', 'ROOM_FULL' or
-- 'NOT_HOLDER'.
local node, epoch, trim = ARGV[1], ARGV[2], ARGV[3]
local max_members = tonumber(redis.call('HGET', meta, 'max_members') or ARGV[4])
local deadline = tonumber(ARGV[5])
if deadline > 0 and now_ms() > deadline then return 'EXPIRED' end
local state = check(node, epoch)
if state ~= 'OK' then return state end
local mine = KEYS[5]

local function join(conn, name, key)
  if redis.call('HEXISTS', names, key) == 1 then return 'NAME_TAKEN' end
  if redis.call('HLEN', names) >= max_members then return 'ROOM_FULL' end
  redis.call('HSET', names, key, node .. ':' .. conn .. ':' .. name)
  redis.call('SADD', mine, key)
  append(trim, {'node', node, 'conn', conn, 'name', name, 'key', key, 'kind', 'join'})
  return 'OK'
end

local function chat(conn, name, key, text)
  if not holds(key, node, conn) then return 'NOT_HOLDER' end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  append(trim, {'node', node, 'conn', conn, 'name', name, 'key', key, 'kind', 'chat',
    'seq', seq, 'text', text})
  return 'OK'
end

local function leave(conn, name, key, reason)
  if not holds(key, node, conn) then return 'NOT_HOLDER' end
  redis.call('HDEL', names, key)
  redis.call('SREM', mine, key)
  append(trim, {'node', node, 'conn', conn, 'name', name, 'key', key, 'kind', 'leave',
    'reason', reason})
  return 'OK'
end

local answers = {}
for i = 6, #ARGV, 5 do
  local kind, conn, name, key, extra = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local answer
  if kind == 'join' then
    answer = join(conn, name, key)
  elseif kind == 'chat' then
    answer = chat(conn, name, key, extra)
  elseif kind == 'leave' then
    answer = leave(conn, name, key, extra)
  else
    answer = 'BAD_KIND'
  end
  answers[#answers + 1] = answer
end
return answers

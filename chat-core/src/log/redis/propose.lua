-- KEYS[5] members of this node, KEYS[6] its last batch's token and answers. ARGV: node, epoch,
-- trim, max members (used only if the room holds none: the room's own cap, set by the node that
-- created it, applies), deadline (Redis's time in ms after which the node has given up waiting
-- for the answer; 0 for none), token (the batch's name: a batch tried again whose token is the
-- last one run gets the answers it got then, and runs no second time), then six per proposal,
-- in the order the node made them: kind, conn, name, key, and two more by kind: for 'join' the
-- user ('' for no ident, else '+' and the user) and the real name; for 'chat' the text and its
-- kind ('plain', 'action', 'notice'); for 'leave' the reason code and the parting words ('' for
-- none, else '+' and the words); for 'rename' the new name and its folded key; for 'away' the
-- message ('' for back, else '+' and the message) and ''; for 'moderate' the action and its
-- arguments (see `moderate`). Runs them in that order, atomically,
-- so that a node's proposals cost one round trip per batch, not one each.
-- Returns 'EXPIRED' (past the deadline: nothing is done, as the node told its members), 'RESET'
-- or 'FENCED' for the whole batch, or one answer per proposal: 'OK', 'NAME_TAKEN', 'ROOM_FULL' or
-- 'NOT_HOLDER', or for a rename or away 'OLD_NODES' while a live node does not read them (an
-- older node would start over at such an entry). An entry other than a join carries the name
-- the claim holds.
local node, epoch, trim = ARGV[1], ARGV[2], ARGV[3]
local max_members = tonumber(redis.call('HGET', meta, 'max_members') or ARGV[4])
local deadline = tonumber(ARGV[5])
local token, done = ARGV[6], KEYS[6]
local last = redis.call('GET', done)
if last and string.sub(last, 1, #token + 1) == token .. '|' then
  local again = {}
  for answer in string.gmatch(string.sub(last, #token + 2), '[^,]+') do
    again[#again + 1] = answer
  end
  return again
end
if deadline > 0 and now_ms() > deadline then return 'EXPIRED' end
local state = check(node, epoch)
if state ~= 'OK' then return state end
local mine = KEYS[5]

local function join(conn, name, key, user, real)
  if redis.call('HEXISTS', names, key) == 1 then return 'NAME_TAKEN' end
  if redis.call('HLEN', names) >= max_members then return 'ROOM_FULL' end
  local claim = node .. ':' .. conn .. ':' .. name
  redis.call('HSET', names, key, claim)
  redis.call('SADD', mine, key)
  if user == '' then real = '' else real = '+' .. real end
  keep_seat(key, claim, '', user, real)
  local fields = {'node', node, 'conn', conn, 'name', name, 'key', key, 'kind', 'join'}
  if user ~= '' then
    for _, v in ipairs({'user', string.sub(user, 2), 'realname', string.sub(real, 2)}) do
      fields[#fields + 1] = v
    end
  end
  append(trim, fields)
  return 'OK'
end

local function chat(conn, held, key, text, kind)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  append(trim, {'node', node, 'conn', conn, 'name', held, 'key', key, 'kind', 'chat',
    'seq', seq, 'text', text, 'chat_kind', kind})
  return 'OK'
end

-- Fields of `kind`, and the words a member gave ('' or '+...') as a 'message' field.
local function with_message(fields, words)
  if words ~= '' then
    fields[#fields + 1] = 'message'
    fields[#fields + 1] = string.sub(words, 2)
  end
  return fields
end

local function leave(conn, held, key, reason, words)
  redis.call('HDEL', names, key)
  redis.call('HDEL', seats, key)
  redis.call('SREM', mine, key)
  append(trim, with_message({'node', node, 'conn', conn, 'name', held, 'key', key,
    'kind', 'leave', 'reason', reason}, words))
  return 'OK'
end

-- The claim moves from `key` to `to_key` (the same key: a change of case or form), with its seat.
local function rename(conn, held, key, to_name, to_key)
  if to_key ~= key and redis.call('HEXISTS', names, to_key) == 1 then return 'NAME_TAKEN' end
  local claim = node .. ':' .. conn .. ':' .. held
  local away, user, real = seat_of(key, claim)
  redis.call('HDEL', names, key)
  redis.call('HDEL', seats, key)
  redis.call('SREM', mine, key)
  local to_claim = node .. ':' .. conn .. ':' .. to_name
  redis.call('HSET', names, to_key, to_claim)
  redis.call('SADD', mine, to_key)
  keep_seat(to_key, to_claim, away, user, real)
  append(trim, {'node', node, 'conn', conn, 'name', held, 'key', key, 'kind', 'rename',
    'to_name', to_name, 'to_key', to_key})
  return 'OK'
end

local function away(conn, held, key, words)
  local claim = node .. ':' .. conn .. ':' .. held
  local _, user, real = seat_of(key, claim)
  keep_seat(key, claim, words, user, real)
  append(trim, with_message({'node', node, 'conn', conn, 'name', held, 'key', key,
    'kind', 'away'}, words))
  return 'OK'
end

-- An operator's action: `action` its code ('kick', 'ban', 'unban', 'mute', 'unmute'), `args`
-- its target ('n:' and a folded name, or 'a:' and an address or CIDR), how long it lasts in ms
-- ('' for until lifted) and its reason ('' for none, else '+' and the reason), one per line.
-- The gate checked who may act; the entry's time (its ID) is when it took effect.
local function moderate(conn, held, key, action, args)
  local target, for_ms, why = string.match(args, '^([^\n]*)\n([^\n]*)\n(.*)$')
  if not target then return 'BAD_KIND' end
  local fields = {'node', node, 'conn', conn, 'name', held, 'key', key, 'kind', 'moderate',
    'action', action, 'target', target}
  if for_ms ~= '' then
    fields[#fields + 1] = 'for_ms'
    fields[#fields + 1] = for_ms
  end
  if why ~= '' then
    fields[#fields + 1] = 'why'
    fields[#fields + 1] = string.sub(why, 2)
  end
  append(trim, fields)
  return 'OK'
end

-- Whether every node in the room reads renames and away entries (asked once per batch).
local all_new
local function all_read_new()
  if all_new == nil then
    all_new = true
    for _, n in ipairs(redis.call('ZRANGE', nodes, 0, -1)) do
      if not redis.call('HGET', versions, n) then all_new = false end
    end
  end
  return all_new
end

local answers = {}
for i = 7, #ARGV, 6 do
  local kind, conn, name, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local a, b = ARGV[i + 4], ARGV[i + 5]
  local answer
  if kind == 'join' then
    answer = join(conn, name, key, a, b)
  else
    local held = holds(key, node, conn)
    if not held then
      answer = 'NOT_HOLDER'
    elseif (kind == 'rename' or kind == 'away' or kind == 'moderate') and not all_read_new() then
      answer = 'OLD_NODES'
    elseif kind == 'chat' then
      answer = chat(conn, held, key, a, b)
    elseif kind == 'leave' then
      answer = leave(conn, held, key, a, b)
    elseif kind == 'rename' then
      answer = rename(conn, held, key, a, b)
    elseif kind == 'away' then
      answer = away(conn, held, key, a)
    elseif kind == 'moderate' then
      answer = moderate(conn, held, key, a, b)
    else
      answer = 'BAD_KIND'
    end
  end
  answers[#answers + 1] = answer
end
-- Kept for a minute: a batch is tried again within its node's deadline.
redis.call('SET', done, token .. '|' .. table.concat(answers, ','), 'PX', 60000)
return answers

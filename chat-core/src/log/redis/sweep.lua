-- ARGV: trim, and optionally a node and a reason (a node retiring itself). Without them, every
-- node whose lease ran out. Frees each such node's claims, appends one leave per member (reason
-- server_lost), and forgets the node: it is fenced from then on. Returns the members let go.
local targets
if ARGV[2] then
  targets = {ARGV[2]}
else
  targets = redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now_ms())
end
local reason = ARGV[3] or 'server_lost'
local count = 0
for _, node in ipairs(targets) do
  local members = prefix .. 'members:' .. node
  local keys = redis.call('SMEMBERS', members)
  table.sort(keys)
  for _, key in ipairs(keys) do
    local claim = redis.call('HGET', names, key)
    if claim then
      local n, c, name = string.match(claim, '^(%d+):(%d+):(.*)$')
      if n == node then
        redis.call('HDEL', names, key)
        redis.call('HDEL', seats, key)
        append(ARGV[1], {'node', n, 'conn', c, 'name', name, 'key', key, 'kind', 'leave',
          'reason', reason})
        count = count + 1
      end
    end
  end
  redis.call('DEL', members)
  redis.call('ZREM', nodes, node)
  redis.call('HDEL', versions, node)
end
return count

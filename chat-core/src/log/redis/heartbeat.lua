-- ARGV: node, epoch, lease ms. Extends a live node's lease; a swept or expired node is refused.
-- Returns {'OK', 'FENCED' or 'RESET', Redis's time in ms}.
local state = check(ARGV[1], ARGV[2])
local now = now_ms()
if state == 'OK' then
  redis.call('ZADD', nodes, now + tonumber(ARGV[3]), ARGV[1])
end
return {state, now}

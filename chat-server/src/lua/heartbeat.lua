-- ARGV: node, epoch, lease ms. Extends a live node's lease; a swept or expired node is refused.
local state = check(ARGV[1], ARGV[2])
if state ~= 'OK' then return state end
redis.call('ZADD', nodes, now_ms() + tonumber(ARGV[3]), ARGV[1])
return 'OK'

-- KEYS[5] members of this node. ARGV: node, epoch, conn, name, key, trim, reason.
local state = check(ARGV[1], ARGV[2])
if state ~= 'OK' then return state end
if not holds(ARGV[5], ARGV[1], ARGV[3]) then return 'NOT_HOLDER' end
redis.call('HDEL', names, ARGV[5])
redis.call('SREM', KEYS[5], ARGV[5])
append(ARGV[6], {'node', ARGV[1], 'conn', ARGV[3], 'name', ARGV[4], 'key', ARGV[5], 'kind', 'leave',
  'reason', ARGV[7]})
return 'OK'

-- KEYS[5] members of this node. ARGV: node, epoch, conn, name, key, trim, max members.
local state = check(ARGV[1], ARGV[2])
if state ~= 'OK' then return state end
if redis.call('HEXISTS', names, ARGV[5]) == 1 then return 'NAME_TAKEN' end
if redis.call('HLEN', names) >= tonumber(ARGV[7]) then return 'ROOM_FULL' end
redis.call('HSET', names, ARGV[5], ARGV[1] .. ':' .. ARGV[3] .. ':' .. ARGV[4])
redis.call('SADD', KEYS[5], ARGV[5])
append(ARGV[6], {'node', ARGV[1], 'conn', ARGV[3], 'name', ARGV[4], 'key', ARGV[5], 'kind', 'join'})
return 'OK'

-- ARGV: node, epoch, conn, name, key, trim, text.
local state = check(ARGV[1], ARGV[2])
if state ~= 'OK' then return state end
if not holds(ARGV[5], ARGV[1], ARGV[3]) then return 'NOT_HOLDER' end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
append(ARGV[6], {'node', ARGV[1], 'conn', ARGV[3], 'name', ARGV[4], 'key', ARGV[5], 'kind', 'chat',
  'seq', seq, 'text', ARGV[7]})
return 'OK'

-- ARGV: epoch candidate, lease ms. A new node number with a lease; creates the room (its epoch)
-- if Redis does not have it. Returns {node, epoch, Redis's time in ms}.
redis.call('HSETNX', meta, 'epoch', ARGV[1])
local epoch = redis.call('HGET', meta, 'epoch')
local node = redis.call('HINCRBY', meta, 'nodes', 1)
local now = now_ms()
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), node)
return {node, epoch, now}

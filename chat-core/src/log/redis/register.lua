-- ARGV: epoch candidate, lease ms, max members. A new node number with a lease; creates the room
-- (its epoch and its member cap, which every node then applies) if Redis does not have it.
-- Marks the node as one that reads renames and away (`versions`: node -> 3; an older node's
-- register does not), so that they are proposed only while every live node can read them.
-- Returns {node, epoch, Redis's time in ms, the room's member cap}.
redis.call('HSETNX', meta, 'epoch', ARGV[1])
redis.call('HSETNX', meta, 'max_members', ARGV[3])
local epoch = redis.call('HGET', meta, 'epoch')
local max_members = redis.call('HGET', meta, 'max_members')
local node = redis.call('HINCRBY', meta, 'nodes', 1)
local now = now_ms()
redis.call('ZADD', nodes, now + tonumber(ARGV[2]), node)
redis.call('HSET', versions, node, 3)
return {node, epoch, now, tonumber(max_members)}

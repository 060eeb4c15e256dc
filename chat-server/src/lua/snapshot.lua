-- The room now, atomically: {pos, seq, epoch, last stream id, {key, claim, key, claim, ...}}.
local m = redis.call('HMGET', meta, 'pos', 'seq', 'epoch')
local last = '0-0'
local tail = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
if tail[1] then last = tail[1][1] end
return {m[1] or '0', m[2] or '0', m[3] or '', last, redis.call('HGETALL', names)}

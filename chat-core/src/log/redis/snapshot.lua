-- ARGV: history (how many recent chats to include). The room now, atomically:
-- {pos, seq, epoch, last stream id, {key, claim, seat, key, claim, seat, ...},
-- {id, seq, name, text, chat kind, ...}}, a seat as seats keeps it after the claim ('' if it keeps
-- none for that claim), a chat's kind '' if its entry has none; the chats oldest first, looked
-- for among at most 20 entries per chat wanted (joins and leaves come in between), so that a
-- node starting now shows newcomers what the others show. A chat's stream ID gives its time.
local m = redis.call('HMGET', meta, 'pos', 'seq', 'epoch')
local last = '0-0'
local tail = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
if tail[1] then last = tail[1][1] end
local want = tonumber(ARGV[1]) or 0
local found = {}
local from, budget = '+', want * 20
while #found < want and budget > 0 do
  local batch = redis.call('XREVRANGE', log, from, '-', 'COUNT', math.min(budget, 512))
  if #batch == 0 then break end
  budget = budget - #batch
  for _, entry in ipairs(batch) do
    local f, kind, seq, name, text, chat_kind = entry[2], nil, nil, nil, nil, ''
    for i = 1, #f, 2 do
      if f[i] == 'kind' then kind = f[i + 1]
      elseif f[i] == 'seq' then seq = f[i + 1]
      elseif f[i] == 'name' then name = f[i + 1]
      elseif f[i] == 'text' then text = f[i + 1]
      elseif f[i] == 'chat_kind' then chat_kind = f[i + 1] end
    end
    if kind == 'chat' and #found < want then
      found[#found + 1] = {entry[1], seq, name, text, chat_kind}
    end
    from = '(' .. entry[1]
  end
end
local history = {}
for i = #found, 1, -1 do
  for _, v in ipairs(found[i]) do history[#history + 1] = v end
end
local claims = {}
local all = redis.call('HGETALL', names)
for i = 1, #all, 2 do
  local away, user, real = seat_of(all[i], all[i + 1])
  for _, v in ipairs({all[i], all[i + 1], away .. '\n' .. user .. '\n' .. real}) do
    claims[#claims + 1] = v
  end
end
return {m[1] or '0', m[2] or '0', m[3] or '', last, claims, history}

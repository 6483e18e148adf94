-- ARGV: base, now, batch. Removes up to batch sessions whose expires_at
-- is at or before now; answers {examined, removed}.
local due = redis.call('ZRANGEBYSCORE', EXP, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local n = 0
for _, hex in ipairs(due) do
  if remove(hex) then
    n = n + 1
  end
end
return {#due, n}

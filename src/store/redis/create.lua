-- ARGV: base, hex, d, l, e, user, ttl, max_sessions.
-- 1 created; 0 full (SPEC 7.3); -1 the key is taken (never, for fresh ids).
local max = tonumber(ARGV[8])
local n = redis.call('ZCARD', ALL)
if n >= max then
  -- Down to one below the cap, longest idle anonymous first.
  for _, hex in ipairs(redis.call('ZRANGE', IDLE, 0, n - max)) do
    remove(hex)
  end
  if redis.call('ZCARD', ALL) >= max then
    return 0
  end
end
if redis.call('EXISTS', B .. 'k:' .. ARGV[2]) == 1 then
  return -1
end
write(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))
return 1

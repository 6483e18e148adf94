-- ARGV: base, hex, d, l, e, user, ttl. 1 replaced; 0 gone, nothing written.
local k = B .. 'k:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then
  return 0
end
local old = redis.call('HGET', k, 'u')
if old and old ~= ARGV[6] then
  redis.call('SREM', B .. 'u:' .. old, ARGV[2])
end
write(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))
return 1

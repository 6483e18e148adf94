-- ARGV: base, hex, last_seen, expires_at, ttl. 1 touched; 0 gone.
-- Times only move forward, as in every backend.
local k = B .. 'k:' .. ARGV[2]
local cur = redis.call('HMGET', k, 'l', 'e', 'u')
if not cur[1] then
  return 0
end
local l, e = cur[1], cur[2]
if tonumber(ARGV[3]) > tonumber(l) then
  l = ARGV[3]
end
if tonumber(ARGV[4]) > tonumber(e) then
  e = ARGV[4]
end
redis.call('HSET', k, 'l', l, 'e', e)
local ttl = tonumber(ARGV[5])
keep(k, ttl)
index(ARGV[2], l, e, cur[3] or '', ttl)
return 1

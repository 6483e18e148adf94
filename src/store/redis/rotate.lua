-- ARGV: base, old hex, new hex, d, l, e, user, ttl. 1 moved; 0 the old
-- session is gone (ended or revoked), nothing written (SPEC 4.6).
if redis.call('EXISTS', B .. 'k:' .. ARGV[2]) == 0 then
  return 0
end
remove(ARGV[3])
write(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]))
remove(ARGV[2])
return 1

-- ARGV: base, user. Removes every session of the user and answers them as
-- hex, d, l, e, ... One script: a rotation lands wholly before or after.
local u = B .. 'u:' .. ARGV[2]
local hexes = redis.call('SMEMBERS', u)
local out = collect(hexes, {})
for _, hex in ipairs(hexes) do
  remove(hex)
end
redis.call('DEL', u)
return out

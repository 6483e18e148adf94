-- ARGV: base, user. The user's sessions as hex, d, l, e, ...; drops
-- members whose session Redis expired on its own.
local u = B .. 'u:' .. ARGV[2]
local hexes = redis.call('SMEMBERS', u)
local out = collect(hexes, {})
if #out / 4 < #hexes then
  for _, hex in ipairs(hexes) do
    if redis.call('EXISTS', B .. 'k:' .. hex) == 0 then
      redis.call('SREM', u, hex)
    end
  end
end
return out

-- ARGV: base, handle (16 hex). The sessions whose hex starts with it, as
-- hex, d, l, e, ... ("g" sorts after every hex digit).
local hexes = redis.call('ZRANGEBYLEX', ALL, '[' .. ARGV[2], '(' .. ARGV[2] .. 'g')
return collect(hexes, {})

-- Shared by every script (src/store/redis/scripts.rs). ARGV[1] is the key
-- base, "<key_prefix>{sessions}:": every key below starts with it, so all
-- of them hash to one Redis Cluster slot and a script may touch any.
--   <base>k:<hex>   hash: d = the session (JSON), l = last_seen,
--                   e = expires_at (unix ms), u = the bound user if any
--   <base>all       zset, every session's hex at score 0 (handle lookups
--                   by lexical range, and the count)
--   <base>exp       zset, hex by expires_at (the purge)
--   <base>idle      zset, anonymous sessions' hex by last_seen (eviction)
--   <base>u:<user>  set of the user's sessions' hex
-- Each index key's TTL is stretched to the longest TTL of the sessions
-- written into it, so every key expires once nothing live is left.
local B = ARGV[1]
local ALL, EXP, IDLE = B .. 'all', B .. 'exp', B .. 'idle'

local function keep(k, ttl)
  if redis.call('PTTL', k) < ttl then
    redis.call('PEXPIRE', k, ttl)
  end
end

local function index(hex, l, e, user, ttl)
  redis.call('ZADD', ALL, 0, hex)
  keep(ALL, ttl)
  redis.call('ZADD', EXP, e, hex)
  keep(EXP, ttl)
  if user == '' then
    redis.call('ZADD', IDLE, l, hex)
    keep(IDLE, ttl)
  else
    redis.call('ZREM', IDLE, hex)
    local u = B .. 'u:' .. user
    redis.call('SADD', u, hex)
    keep(u, ttl)
  end
end

-- Removes a session and its index entries (also those of one Redis
-- expired on its own); true when the session was there.
local function remove(hex)
  local k = B .. 'k:' .. hex
  local user = redis.call('HGET', k, 'u')
  redis.call('ZREM', ALL, hex)
  redis.call('ZREM', EXP, hex)
  redis.call('ZREM', IDLE, hex)
  if user then
    redis.call('SREM', B .. 'u:' .. user, hex)
  end
  return redis.call('DEL', k) == 1
end

-- Stores a whole session under hex, replacing what was there.
local function write(hex, d, l, e, user, ttl)
  local k = B .. 'k:' .. hex
  redis.call('DEL', k)
  if user == '' then
    redis.call('HSET', k, 'd', d, 'l', l, 'e', e)
  else
    redis.call('HSET', k, 'd', d, 'l', l, 'e', e, 'u', user)
  end
  redis.call('PEXPIRE', k, ttl)
  index(hex, l, e, user, ttl)
end

-- Appends hex, d, l, e of each listed session still there to out.
local function collect(hexes, out)
  for _, hex in ipairs(hexes) do
    local v = redis.call('HMGET', B .. 'k:' .. hex, 'd', 'l', 'e')
    if v[1] then
      out[#out + 1] = hex
      out[#out + 1] = v[1]
      out[#out + 1] = v[2]
      out[#out + 1] = v[3]
    end
  end
  return out
end

-- One sweep of a cell: nodes past the heartbeat TTL go offline (out of every index, their leases
-- expired), leases past their expiry are dropped, flag cooldowns that ended are lifted, lapsed gateway
-- session claims are dropped (the node leaves its pools).
-- KEYS[1] cell base; touches base..seen, node:*, status:*, ready:*, catalog, stats, lease:*, leaseexp,
--         nodeleases:*, flagexp, flagged, session, sessionby.
-- ARGV[1] heartbeat TTL (ms)   ARGV[2] maximum items of each kind handled per call
-- returns {offline {addr, last seen ms, ...}, expired leases {job, addr, token, ...}, lifted {addr, flag, ...},
--          now ms}
local base = KEYS[1]
local ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local offline, expired, lifted = {}, {}, {}

local gone = redis.call('ZRANGEBYSCORE', base .. 'seen', '-inf', now - ttl, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #gone, 2 do
  local addr = gone[i]
  offline[#offline + 1] = addr
  offline[#offline + 1] = gone[i + 1]
  for _, job in ipairs(redis.call('SMEMBERS', base .. 'nodeleases:' .. addr)) do
    local l = drop_lease(base, job)
    if l then
      expired[#expired + 1] = job; expired[#expired + 1] = l[1]; expired[#expired + 1] = l[2]
    end
  end
  unindex(base, addr)
  redis.call('DEL', base .. 'node:' .. addr, base .. 'nodeleases:' .. addr, base .. 'status:' .. addr)
  redis.call('SREM', base .. 'flagged', addr .. '|pause', addr .. '|freeze', addr .. '|shadow_ban')
  redis.call('ZREM', base .. 'seen', addr)
end

local due = redis.call('ZRANGEBYSCORE', base .. 'leaseexp', '-inf', now, 'LIMIT', 0, limit)
for _, job in ipairs(due) do
  local l = drop_lease(base, job)
  if l then
    expired[#expired + 1] = job; expired[#expired + 1] = l[1]; expired[#expired + 1] = l[2]
    place(base, l[1], now, ttl)
  end
end

local ends = redis.call('ZRANGEBYSCORE', base .. 'flagexp', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #ends, 2 do
  local addr, flag = string.match(ends[i], '^(.*)|(.*)$')
  redis.call('ZREM', base .. 'flagexp', ends[i])
  local nkey = base .. 'node:' .. addr
  -- Lift only the cooldown that was scheduled: a later, longer flag keeps its own expiry.
  if redis.call('HGET', nkey, 'f:' .. flag) == ends[i + 1] then
    redis.call('HDEL', nkey, 'f:' .. flag)
    redis.call('SREM', base .. 'flagged', ends[i])
    place(base, addr, now, ttl)
    lifted[#lifted + 1] = addr; lifted[#lifted + 1] = flag
  end
end
-- Session claims nobody refreshed (a silent socket, a crashed gateway process): out of the pools.
local lapsed = redis.call('ZRANGEBYSCORE', base .. 'session', '-inf', now, 'LIMIT', 0, limit)
for _, addr in ipairs(lapsed) do
  redis.call('ZREM', base .. 'session', addr)
  redis.call('HDEL', base .. 'sessionby', addr)
  place(base, addr, now, ttl)
end
return {offline, expired, lifted, now}

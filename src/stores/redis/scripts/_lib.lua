-- Shared helpers prepended to every live-node script by scripts.ts (not a script on its own).
-- Key suffixes match liveSuffix in ../keys.ts; `base` is always KEYS[1] (one cell, one hash slot).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split(s, sep)
  local out = {}
  if not s or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

-- A flag is active when present and its expiry (ms; 0 = none) is in the future.
local function flag_active(v, now)
  if not v then return false end
  local e = tonumber(v)
  return e == 0 or e > now
end

-- Score in the ready pools: higher is better. `rep` is the measured reputation (0..10000, mirrored in batches
-- from PostgreSQL: nothing the node says about itself); the heartbeat's base holds only its reported load and
-- health; penalties and the node's own lease load lower it.
local function score_of(base_score, rep, pen, leases, cap)
  return rep + base_score - pen - math.floor(leases * 1000 / cap)
end

-- A node is dispatchable only while a gateway process holds an open, answering WebSocket session of it:
-- `session` maps the address to the expiry (ms, Redis time) of that process's last liveness claim
-- (NodeGateway: last frame or pong + NODE_SESSION_LIVENESS_MS). Heartbeats alone keep it online, not routable.
local function session_live(base, addr, now)
  local x = redis.call('ZSCORE', base .. 'session', addr)
  return x ~= false and tonumber(x) > now
end

-- Puts the node into every one of its ready pools when it can take a job now, or removes it.
-- Eligible: record present, seen within ttl, healthy, no active flag, leases < capacity, a live session.
local function place(base, addr, now, ttl)
  local h = redis.call('HMGET', base .. 'node:' .. addr, 'pools', 'base', 'pen', 'leases', 'cap', 'health',
    'seen', 'f:pause', 'f:freeze', 'f:shadow_ban', 'rep')
  if not h[1] then return false end
  local leases = tonumber(h[4]) or 0
  local cap = tonumber(h[5]) or 0
  local eligible = h[6] ~= 'unhealthy' and leases < cap and (tonumber(h[7]) or 0) >= now - ttl
    and not flag_active(h[8], now) and not flag_active(h[9], now) and not flag_active(h[10], now)
    and session_live(base, addr, now)
  local pools = split(h[1], ',')
  local mark = ''
  if eligible then
    local s = score_of(tonumber(h[2]) or 0, tonumber(h[11]) or 0, tonumber(h[3]) or 0, leases, cap)
    for _, p in ipairs(pools) do redis.call('ZADD', base .. p, s, addr) end
    mark = tostring(s)
  else
    for _, p in ipairs(pools) do redis.call('ZREM', base .. p, addr) end
  end
  -- `placed` mirrors the pools: the score the node is in them with, or '' when out of them. The
  -- heartbeat's fast path skips the pools when its new mark equals this one.
  redis.call('HSET', base .. 'node:' .. addr, 'placed', mark)
  return eligible
end

-- Removes the node from its pools and catalog counts (before a re-index or when it goes offline).
local function unindex(base, addr)
  local key = base .. 'node:' .. addr
  local h = redis.call('HMGET', key, 'pools', 'models', 'gcount')
  for _, p in ipairs(split(h[1], ',')) do redis.call('ZREM', base .. p, addr) end
  for _, mv in ipairs(split(h[2], ',')) do
    redis.call('HINCRBY', base .. 'catalog', mv, -1)
    local m = string.match(mv, '^(.*)=')
    if m then redis.call('HDEL', key, 'v:' .. m) end
  end
  if h[3] then redis.call('HINCRBY', base .. 'stats', 'gpus', -(tonumber(h[3]) or 0)) end
  redis.call('HSET', key, 'pools', '')
end

-- Computes the node's pools from its models, region and Subclouds; counts it in the catalog.
-- Subcloud members serve only their Subclouds (isolated pools); others go to the public pools.
local function index(base, addr, models_csv, region, sc_csv, gcount)
  local key = base .. 'node:' .. addr
  local pools = {}
  local scs = split(sc_csv, ',')
  for _, mv in ipairs(split(models_csv, ',')) do
    local m, v = string.match(mv, '^(.*)=(.*)$')
    if m then
      redis.call('HSET', key, 'v:' .. m, v)
      redis.call('HINCRBY', base .. 'catalog', mv, 1)
      if #scs == 0 then
        pools[#pools + 1] = 'ready:' .. m
        if region ~= '' then pools[#pools + 1] = 'ready:' .. m .. '|r:' .. region end
      else
        for _, sc in ipairs(scs) do pools[#pools + 1] = 'ready:' .. m .. '|s:' .. sc end
      end
    end
  end
  redis.call('HINCRBY', base .. 'stats', 'gpus', tonumber(gcount) or 0)
  redis.call('HSET', key, 'pools', table.concat(pools, ','))
end

-- Drops one lease: counters, indexes; returns the node address and token, or nil when absent.
local function drop_lease(base, job)
  local lkey = base .. 'lease:' .. job
  local l = redis.call('HMGET', lkey, 'node', 'token')
  if not l[1] then return nil end
  redis.call('DEL', lkey)
  redis.call('ZREM', base .. 'leaseexp', job)
  redis.call('SREM', base .. 'nodeleases:' .. l[1], job)
  local nkey = base .. 'node:' .. l[1]
  if redis.call('EXISTS', nkey) == 1 then
    local left = redis.call('HINCRBY', nkey, 'leases', -1)
    if left < 0 then redis.call('HSET', nkey, 'leases', 0) end
  end
  return l
end

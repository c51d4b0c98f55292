-- Picks the best eligible node of one cell for a job and leases it, atomically.
-- KEYS[1] cell base (RedisKeys.liveCellBase); touches base..ready:*, node:*, lease:<job>, leaseexp,
--         nodeleases:<addr>, fence; reads session. Node records carry `rep` (score) and `prob` ('1' on probation).
-- ARGV[1] job id   ARGV[2] model   ARGV[3] version ('' = any)   ARGV[4] minimum GPU memory (MB)
-- ARGV[5] preferred region ('' = none; falls back to every region)   ARGV[6] Subcloud id ('' = public)
-- ARGV[7] lease TTL (ms)   ARGV[8] heartbeat TTL (ms)   ARGV[9] excluded node addresses "a,b"
-- ARGV[10] scan limit (candidates examined per pool)
-- ARGV[11] region mode: 'prefer' (region first, then all), 'only' (the region alone), 'any' (ignore it)
-- ARGV[12] '1' when the job is in the probation share (see below), else '0'
-- returns {'OK', address, fencing token, expiry ms} | {'HELD', address, token, expiry} when this job
--         already holds a lease in the cell | {'NONE', examined}
local base = KEYS[1]
local job, model, version = ARGV[1], ARGV[2], ARGV[3]
local min_mem = tonumber(ARGV[4])
local region, subcloud = ARGV[5], ARGV[6]
local lease_ttl, hb_ttl, limit = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[10])
local now = now_ms()

local held = redis.call('HMGET', base .. 'lease:' .. job, 'node', 'token', 'exp')
if held[1] then return {'HELD', held[1], held[2], held[3]} end

local excluded = {}
for _, a in ipairs(split(ARGV[9], ',')) do excluded[a] = true end

-- Subcloud jobs search the Subcloud pool (region checked per node); public jobs search the region
-- pool first, then the whole model pool.
local mode = ARGV[11]
if region == '' then mode = 'any' end
local passes = {}
if subcloud ~= '' then
  local pool = 'ready:' .. model .. '|s:' .. subcloud
  if mode ~= 'any' then passes[#passes + 1] = {pool = pool, region = region} end
  if mode ~= 'only' then passes[#passes + 1] = {pool = pool, region = ''} end
else
  if mode ~= 'any' then passes[#passes + 1] = {pool = 'ready:' .. model .. '|r:' .. region, region = ''} end
  if mode ~= 'only' then passes[#passes + 1] = {pool = 'ready:' .. model, region = ''} end
end

-- Probation share (ARGV[12] '1': this job is one of them): a probation job takes the best probation node, other
-- jobs the best established one; the first usable node of the other kind is kept as a fallback, taken when
-- none of the wanted kind turns up within `pick_limit` matching candidates (or at all), so a network of only
-- new or only established nodes serves every job.
local want_probation = ARGV[12] == '1'
local pick_limit = 32

-- Leases `addr` (checked usable and matching) to the job; returns the script's reply.
local function take(addr, nkey, h)
  local cap, leases = tonumber(h[2]) or 0, tonumber(h[3]) or 0
  -- Tokens start from server time × 1000 when the counter is missing (first use, flush or
  -- restart), so a token issued after a loss of state never repeats one issued before it.
  local fkey = base .. 'fence'
  local token = redis.call('INCR', fkey)
  if token == 1 then
    token = now * 1000
    redis.call('SET', fkey, token)
  end
  -- Integers as exact decimal strings (a Lua number would be formatted as a float).
  token = string.format('%.0f', token)
  local exp = string.format('%.0f', now + lease_ttl)
  redis.call('HSET', base .. 'lease:' .. job, 'node', addr, 'token', token, 'exp', exp)
  redis.call('ZADD', base .. 'leaseexp', exp, job)
  redis.call('SADD', base .. 'nodeleases:' .. addr, job)
  -- The node is otherwise unchanged (checked above): re-place it from what is known.
  leases = leases + 1
  local mark = ''
  if leases < cap then
    mark = tostring(score_of(tonumber(h[12]) or 0, tonumber(h[14]) or 0, tonumber(h[13]) or 0, leases, cap))
  end
  for _, p in ipairs(split(h[11], ',')) do
    if mark ~= '' then redis.call('ZADD', base .. p, tonumber(mark), addr) else redis.call('ZREM', base .. p, addr) end
  end
  redis.call('HSET', nkey, 'leases', leases, 'placed', mark)
  return {'OK', addr, token, exp}
end

local examined = 0
local matched = 0
local fallback = nil
for _, pass in ipairs(passes) do
  local pool = base .. pass.pool
  local offset = 0
  while offset < limit and matched < pick_limit do
    local batch = redis.call('ZREVRANGE', pool, offset, offset + 7)
    if #batch == 0 then break end
    local removed = 0
    for _, addr in ipairs(batch) do
      examined = examined + 1
      if not excluded[addr] then
        local nkey = base .. 'node:' .. addr
        local h = redis.call('HMGET', nkey, 'seen', 'cap', 'leases', 'gmem', 'v:' .. model, 'region', 'health',
          'f:pause', 'f:freeze', 'f:shadow_ban', 'pools', 'base', 'pen', 'rep', 'prob')
        local cap, leases = tonumber(h[2]) or 0, tonumber(h[3]) or 0
        local usable = h[1] and tonumber(h[1]) >= now - hb_ttl and h[7] ~= 'unhealthy' and leases < cap
          and not flag_active(h[8], now) and not flag_active(h[9], now) and not flag_active(h[10], now)
          and session_live(base, addr, now)
        if not usable then
          -- Stale pool entry (offline, flagged, full, no live gateway session, or gone): heal the index on the
          -- way, and clear the node's `placed` mark so that its next heartbeat puts it back in every pool.
          redis.call('ZREM', pool, addr)
          if h[1] then redis.call('HSET', nkey, 'placed', '') end
          removed = removed + 1
        elseif (tonumber(h[4]) or 0) >= min_mem and (version == '' or h[5] == version)
          and (pass.region == '' or h[6] == pass.region) then
          matched = matched + 1
          if (h[15] == '1') == want_probation then return take(addr, nkey, h) end
          if not fallback then fallback = {addr, nkey, h} end
        end
      end
    end
    offset = offset + #batch - removed
  end
  -- A preferred region's fallback beats searching every region for the wanted kind.
  if fallback then return take(fallback[1], fallback[2], fallback[3]) end
end
return {'NONE', examined}

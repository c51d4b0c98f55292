-- Ingests one node heartbeat into its cell: record, indexes, ready pools, liveness. Late heartbeats lose.
-- KEYS[1] cell base (RedisKeys.liveCellBase); touches base..node:<addr>, seen, ready:*, catalog, stats.
-- ARGV[1] address            ARGV[2] node timestamp (ms; strictly increasing per node)
-- ARGV[3] base score         ARGV[4] capacity (concurrent jobs, >= 1)   ARGV[5] reported load
-- ARGV[6] region ('' none)   ARGV[7] GPU class   ARGV[8] GPU memory (MB)   ARGV[9] GPU count
-- ARGV[10] models "model=version,..."   ARGV[11] health (ok|degraded|unhealthy)
-- ARGV[12] static status JSON (versions, GPU, config digest, models), or '' when the caller believes the
--          stored one (digest ARGV[17]) is current
-- ARGV[13] heartbeat TTL (ms)
-- ARGV[14] '1' when hydration data from PostgreSQL follows, else '0'
-- ARGV[15] flags "pause=<expiry ms|0>,..." (hydration)   ARGV[16] Subcloud ids "id,id" (hydration)
-- ARGV[17] digest of the static status
-- returns {'HYDRATE'} when the node has no live record and no hydration was given (caller loads
--         PostgreSQL and calls again); {'STALE', stored_ts} when not newer; {'STATUS'} when ARGV[12] is ''
--         but the stored digest differs (caller sends again with the JSON); {'OK', joined 0|1, eligible 0|1}
local base = KEYS[1]
local addr = ARGV[1]
local key = base .. 'node:' .. addr
local now = now_ms()
local prev = redis.call('HMGET', key, 'ts', 'sig', 'sc', 'placed', 'pen', 'leases', 'pools',
  'f:pause', 'f:freeze', 'f:shadow_ban', 'sdig')
local exists = prev[1] ~= false
local hydrate = ARGV[14] == '1'
if not exists and not hydrate then return {'HYDRATE'} end
if exists and tonumber(prev[1]) >= tonumber(ARGV[2]) then return {'STALE', prev[1]} end
if ARGV[12] == '' and prev[11] ~= ARGV[17] then return {'STATUS'} end

redis.call('HSET', key, 'ts', ARGV[2], 'seen', now, 'base', ARGV[3], 'cap', ARGV[4], 'load', ARGV[5],
  'region', ARGV[6], 'gclass', ARGV[7], 'gmem', ARGV[8], 'health', ARGV[11])
if ARGV[12] ~= '' then redis.call('HSET', key, 'status', ARGV[12], 'sdig', ARGV[17]) end
redis.call('ZADD', base .. 'seen', now, addr)

local sc = prev[3] or ''
local sig = ARGV[6] .. '|' .. ARGV[9] .. '|' .. ARGV[10] .. '|' .. (hydrate and ARGV[16] or sc)
if exists and not hydrate and sig == prev[2] then
  -- Fast path (the steady state): same models, region and Subclouds. Touch the pools only when the
  -- node's eligibility or score changed.
  local leases, cap = tonumber(prev[6]) or 0, tonumber(ARGV[4])
  local eligible = ARGV[11] ~= 'unhealthy' and leases < cap and not flag_active(prev[8], now)
    and not flag_active(prev[9], now) and not flag_active(prev[10], now)
  local mark = ''
  if eligible then mark = tostring(score_of(tonumber(ARGV[3]), tonumber(prev[5]) or 0, leases, cap)) end
  if mark ~= prev[4] then
    for _, p in ipairs(split(prev[7], ',')) do
      if eligible then redis.call('ZADD', base .. p, tonumber(mark), addr) else redis.call('ZREM', base .. p, addr) end
    end
    redis.call('HSET', key, 'placed', mark)
  end
  return {'OK', 0, eligible and 1 or 0}
end

if hydrate then
  sc = ARGV[16]
  redis.call('HDEL', key, 'f:pause', 'f:freeze', 'f:shadow_ban')
  for _, fe in ipairs(split(ARGV[15], ',')) do
    local f, e = string.match(fe, '^(.*)=(.*)$')
    redis.call('HSET', key, 'f:' .. f, e)
    if tonumber(e) > 0 then redis.call('ZADD', base .. 'flagexp', e, addr .. '|' .. f) end
  end
end
if not exists then redis.call('HSET', key, 'leases', 0, 'pen', 0) end
if sig ~= prev[2] then
  if exists then unindex(base, addr) end
  redis.call('HSET', key, 'models', ARGV[10], 'gcount', ARGV[9], 'sc', sc, 'sig', sig)
  index(base, addr, ARGV[10], ARGV[6], sc, ARGV[9])
end
local eligible = place(base, addr, now, tonumber(ARGV[13]))
return {'OK', exists and 0 or 1, eligible and 1 or 0}

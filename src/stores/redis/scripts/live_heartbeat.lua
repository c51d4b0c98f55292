-- Ingests a batch of node heartbeats of one cell: record, indexes, ready pools, liveness. Late
-- heartbeats lose. Batching amortizes the per-call cost; each heartbeat keeps its own reply.
-- KEYS[1] cell base (RedisKeys.liveCellBase); touches base..node:<addr>, status:<addr>, seen, ready:*, catalog, stats,
--         flagexp, flagged; reads session.
-- ARGV[1] heartbeat TTL (ms); ARGV[2..] one heartbeat each, 18 fields joined by TAB (one argument per
--   heartbeat keeps the client's encoding cheap; JSON never contains a raw TAB):
--   1 address   2 node timestamp (ms; strictly increasing per node)   3 base score   4 capacity (>= 1)
--   5 reported load   6 region ('' none)   7 GPU class   8 GPU memory (MB)   9 GPU count
--   10 models "model=version,..."   11 health (ok|degraded|unhealthy)
--   12 '1' when hydration data from PostgreSQL follows, else '0'
--   13 flags "pause=<expiry ms|0>,..." (hydration)   14 Subcloud ids "id,id" (hydration)
--   15 reputation score 0..10000 and 16 probation '1'|'0' (hydration: from PostgreSQL; otherwise the prior,
--      used only by a record that has none: the measured score is mirrored by live_reputation.lua)
--   17 digest of the static status
--   18 static status JSON, or '' when the caller believes the stored one (digest 17) is current
-- returns one string per heartbeat (flat, cheap to build): 'H' when the node has no live record and no
--   hydration was given (caller loads PostgreSQL and sends it again); 'S<stored ts>' when not newer;
--   'T' when field 18 is '' but the stored digest differs (caller sends the JSON); 'O<joined 0|1><eligible 0|1>'
local base = KEYS[1]
local ttl = tonumber(ARGV[1])
local now = now_ms()
-- Liveness of the whole batch goes into the `seen` set in one ZADD at the end.
local seen = {}

local FIELDS = '^' .. string.rep('([^\t]*)\t', 17) .. '(.*)$'

local function beat(packed)
  local addr, ts, base_score, cap_s, load, region, gclass, gmem, gcount, models, health, hyd, flags, scs,
    rep, prob, digest, status = string.match(packed, FIELDS)
  local hydrate = hyd == '1'
  local key = base .. 'node:' .. addr
  local prev = redis.call('HMGET', key, 'ts', 'sig', 'sc', 'placed', 'pen', 'leases', 'pools',
    'f:pause', 'f:freeze', 'f:shadow_ban', 'sdig', 'rep')
  local exists = prev[1] ~= false
  if not exists and not hydrate then return 'H' end
  if exists and tonumber(prev[1]) >= tonumber(ts) then return 'S' .. prev[1] end
  if status == '' and prev[11] ~= digest then return 'T' end

  redis.call('HSET', key, 'ts', ts, 'seen', now, 'base', base_score, 'cap', cap_s, 'load', load,
    'health', health)
  -- The reputation comes from PostgreSQL with a hydration; a record without one (older code) takes the prior.
  local cur_rep = prev[12]
  if hydrate or not cur_rep then
    redis.call('HSET', key, 'rep', rep, 'prob', prob)
    cur_rep = rep
  end
  if status ~= '' then
    -- The static status lives in its own key: the record keeps only short values, so Redis stores it
    -- as a compact listpack (faster to read and write on every heartbeat).
    redis.call('SET', base .. 'status:' .. addr, status)
    redis.call('HSET', key, 'sdig', digest)
  end
  seen[#seen + 1] = now
  seen[#seen + 1] = addr

  local sc = prev[3] or ''
  if hydrate then sc = scs end
  -- Everything static in one signature: when it is unchanged, none of it is written again.
  local sig = region .. '|' .. gcount .. '|' .. gclass .. '|' .. gmem .. '|' .. models .. '|' .. sc
  if exists and not hydrate and sig == prev[2] then
    -- Fast path (the steady state): same models, region and Subclouds. Touch the pools only when the
    -- node's eligibility or score changed.
    local leases, cap = tonumber(prev[6]) or 0, tonumber(cap_s)
    local eligible = health ~= 'unhealthy' and leases < cap and not flag_active(prev[8], now)
      and not flag_active(prev[9], now) and not flag_active(prev[10], now) and session_live(base, addr, now)
    local mark = ''
    if eligible then
      mark = tostring(score_of(tonumber(base_score), tonumber(cur_rep) or 0, tonumber(prev[5]) or 0, leases, cap))
    end
    if mark ~= prev[4] then
      for _, p in ipairs(split(prev[7], ',')) do
        if eligible then redis.call('ZADD', base .. p, tonumber(mark), addr) else redis.call('ZREM', base .. p, addr) end
      end
      redis.call('HSET', key, 'placed', mark)
    end
    return eligible and 'O01' or 'O00'
  end

  if hydrate then
    redis.call('HDEL', key, 'f:pause', 'f:freeze', 'f:shadow_ban')
    redis.call('SREM', base .. 'flagged', addr .. '|pause', addr .. '|freeze', addr .. '|shadow_ban')
    for _, fe in ipairs(split(flags, ',')) do
      local f, e = string.match(fe, '^(.*)=(.*)$')
      redis.call('HSET', key, 'f:' .. f, e)
      redis.call('SADD', base .. 'flagged', addr .. '|' .. f)
      if tonumber(e) > 0 then redis.call('ZADD', base .. 'flagexp', e, addr .. '|' .. f) end
    end
  end
  if not exists then redis.call('HSET', key, 'leases', 0, 'pen', 0) end
  if sig ~= prev[2] then
    if exists then unindex(base, addr) end
    redis.call('HSET', key, 'models', models, 'gcount', gcount, 'sc', sc, 'sig', sig, 'region', region,
      'gclass', gclass, 'gmem', gmem)
    index(base, addr, models, region, sc, gcount)
  end
  -- place() checks liveness from `seen`, set above in the record.
  local eligible = place(base, addr, now, ttl)
  return 'O' .. (exists and '0' or '1') .. (eligible and '1' or '0')
end

local replies = {}
for i = 2, #ARGV do replies[#replies + 1] = beat(ARGV[i]) end
if #seen > 0 then redis.call('ZADD', base .. 'seen', unpack(seen)) end
return replies

-- Picks a node of one cell to run a blind copy of a job (a spot check) and leases it, atomically. Unlike
-- live_select_lease it scans the cell's online nodes (`seen`), not the ready pools, so that a shadow-banned node
-- (out of every pool: it gets no consumer traffic) keeps receiving blind copies and stays measured.
-- KEYS[1] cell base; touches base..seen, node:*, session, lease:<job>, leaseexp, nodeleases:<addr>, fence,
--         and the ready pools of the node taken (re-placed unless a flag keeps it out).
-- ARGV[1] blind job id   ARGV[2] model   ARGV[3] lease TTL (ms)   ARGV[4] heartbeat TTL (ms)
-- ARGV[5] excluded node addresses "a,b" (the original's operator account)   ARGV[6] start index (random, >= 0)
-- ARGV[7] '1': only a shadow-banned node (the caller tries every cell so first), '0': any usable node
-- returns {'OK', address, fencing token, expiry ms} | {'NONE', examined}
local base = KEYS[1]
local job, model = ARGV[1], ARGV[2]
local lease_ttl, hb_ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local start = tonumber(ARGV[6]) or 0
local now = now_ms()

local excluded = {}
for _, a in ipairs(split(ARGV[5], ',')) do excluded[a] = true end

local usable, banned = {}, {}
local seen = redis.call('ZRANGEBYSCORE', base .. 'seen', now - hb_ttl, '+inf')
for _, addr in ipairs(seen) do
  if not excluded[addr] then
    local h = redis.call('HMGET', base .. 'node:' .. addr, 'seen', 'cap', 'leases', 'v:' .. model, 'health',
      'f:pause', 'f:freeze', 'f:shadow_ban')
    local cap, leases = tonumber(h[2]) or 0, tonumber(h[3]) or 0
    if h[1] and h[4] and h[5] ~= 'unhealthy' and leases < cap and not flag_active(h[6], now)
      and not flag_active(h[7], now) and session_live(base, addr, now) then
      usable[#usable + 1] = addr
      if flag_active(h[8], now) then banned[#banned + 1] = addr end
    end
  end
end
local from = usable
if ARGV[7] == '1' then from = banned end
if #from == 0 then return {'NONE', #seen} end
local addr = from[(start % #from) + 1]
local nkey = base .. 'node:' .. addr

local fkey = base .. 'fence'
local token = redis.call('INCR', fkey)
if token == 1 then
  token = now * 1000
  redis.call('SET', fkey, token)
end
token = string.format('%.0f', token)
local exp = string.format('%.0f', now + lease_ttl)
redis.call('HSET', base .. 'lease:' .. job, 'node', addr, 'token', token, 'exp', exp)
redis.call('ZADD', base .. 'leaseexp', exp, job)
redis.call('SADD', base .. 'nodeleases:' .. addr, job)
redis.call('HINCRBY', nkey, 'leases', 1)
-- Re-placed from its record: a full node leaves its pools, a shadow-banned one stays out of them.
place(base, addr, now, hb_ttl)
return {'OK', addr, token, exp}

-- Ends a lease on completion or failure, checking the fencing token; returns the node to its pools.
-- KEYS[1] cell base; touches base..lease:<job>, leaseexp, nodeleases:<addr>, node:<addr>, ready:*.
-- ARGV[1] job id   ARGV[2] node address   ARGV[3] fencing token   ARGV[4] outcome (ok|failed)
-- ARGV[5] penalty to add on failure   ARGV[6] penalty to remove on success   ARGV[7] heartbeat TTL (ms)
-- returns {'OK', penalty after} | {'NO_LEASE'} (expired or never taken) | {'STALE', current token}
local base = KEYS[1]
local job, addr, token = ARGV[1], ARGV[2], ARGV[3]
local l = redis.call('HMGET', base .. 'lease:' .. job, 'node', 'token')
if not l[1] then return {'NO_LEASE'} end
if l[1] ~= addr or l[2] ~= token then return {'STALE', l[2]} end
drop_lease(base, job)
local nkey = base .. 'node:' .. addr
local pen = 0
if redis.call('EXISTS', nkey) == 1 then
  pen = tonumber(redis.call('HGET', nkey, 'pen')) or 0
  if ARGV[4] == 'failed' then pen = pen + tonumber(ARGV[5]) else pen = math.max(0, pen - tonumber(ARGV[6])) end
  redis.call('HSET', nkey, 'pen', pen)
  place(base, addr, now_ms(), tonumber(ARGV[7]))
end
return {'OK', pen}

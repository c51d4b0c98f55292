-- Mirrors a node's Subcloud membership (changed in PostgreSQL first) and re-indexes its pools.
-- KEYS[1] cell base; touches base..node:<addr>, ready:*, catalog, stats.
-- ARGV[1] address   ARGV[2] Subcloud ids "id,id"   ARGV[3] heartbeat TTL (ms)
-- returns {'OK', live 0|1}
local base = KEYS[1]
local addr = ARGV[1]
local nkey = base .. 'node:' .. addr
if redis.call('EXISTS', nkey) == 0 then return {'OK', 0} end
local h = redis.call('HMGET', nkey, 'models', 'region', 'gcount', 'gclass', 'gmem')
unindex(base, addr)
local models, region, gcount = h[1] or '', h[2] or '', h[3] or '0'
-- Same signature layout as live_heartbeat.lua, so the next heartbeat takes the fast path.
local sig = region .. '|' .. gcount .. '|' .. (h[4] or '') .. '|' .. (h[5] or '') .. '|' .. models .. '|' .. ARGV[2]
redis.call('HSET', nkey, 'sc', ARGV[2], 'sig', sig)
index(base, addr, models, region, ARGV[2], gcount)
place(base, addr, now_ms(), tonumber(ARGV[3]))
return {'OK', 1}

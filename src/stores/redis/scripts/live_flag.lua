-- Mirrors one moderation flag (set or cleared in PostgreSQL first) into a node's live record.
-- KEYS[1] cell base; touches base..node:<addr>, ready:*, flagexp, flagged.
-- ARGV[1] address   ARGV[2] flag (pause|freeze|shadow_ban)   ARGV[3] 'set' or 'clear'
-- ARGV[4] expiry ms (0 = until cleared)   ARGV[5] heartbeat TTL (ms)
-- returns {'OK', live 0|1} (live 0: the node has no live record; its next heartbeat hydrates the flag)
local base = KEYS[1]
local addr, flag = ARGV[1], ARGV[2]
local nkey = base .. 'node:' .. addr
redis.call('ZREM', base .. 'flagexp', addr .. '|' .. flag)
if ARGV[3] == 'clear' then redis.call('SREM', base .. 'flagged', addr .. '|' .. flag) end
if redis.call('EXISTS', nkey) == 0 then return {'OK', 0} end
if ARGV[3] == 'set' then
  redis.call('HSET', nkey, 'f:' .. flag, ARGV[4])
  redis.call('SADD', base .. 'flagged', addr .. '|' .. flag)
  if tonumber(ARGV[4]) > 0 then redis.call('ZADD', base .. 'flagexp', ARGV[4], addr .. '|' .. flag) end
else
  redis.call('HDEL', nkey, 'f:' .. flag)
end
place(base, addr, now_ms(), tonumber(ARGV[5]))
return {'OK', 1}

-- Gateway sessions of one cell's nodes: a process claims, refreshes or drops the liveness of the WebSocket
-- sessions it holds; a node enters its ready pools only while its claim is in force (session_live in _lib).
-- KEYS[1] cell base; touches base..session (ZSET addr -> claim expiry ms), sessionby (HASH addr -> instance),
--         node:<addr>, ready:*.
-- ARGV[1] op: 'open' (a session became ready here: the newest connection of a node wins), 'refresh' (extends
--         only claims this instance holds or nobody holds), 'close' (drops only this instance's claim)
-- ARGV[2] instance id   ARGV[3] heartbeat TTL (ms)
-- ARGV[4..] open/refresh: pairs address, milliseconds the claim stays in force from now; close: addresses
-- returns one 0|1 per address: 1 when the claim was written (open/refresh) or dropped (close)
local base = KEYS[1]
local op, instance, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out = {}
local step = op == 'close' and 1 or 2
for i = 4, #ARGV, step do
  local addr = ARGV[i]
  local owner = redis.call('HGET', base .. 'sessionby', addr)
  local done = 0
  if op == 'close' then
    if owner == instance then
      redis.call('HDEL', base .. 'sessionby', addr)
      redis.call('ZREM', base .. 'session', addr)
      place(base, addr, now, ttl)
      done = 1
    end
  elseif op == 'open' or owner == instance or owner == false then
    local was_live = session_live(base, addr, now)
    redis.call('HSET', base .. 'sessionby', addr, instance)
    redis.call('ZADD', base .. 'session', now + tonumber(ARGV[i + 1]), addr)
    -- A claim that was in force already left the pools as they were; a new one may put the node in.
    if not was_live then place(base, addr, now, ttl) end
    done = 1
  end
  out[#out + 1] = done
end
return out

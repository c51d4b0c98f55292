-- Mirrors measured reputation scores (computed from PostgreSQL, in batches) into one cell's live records and
-- re-places each node in its ready pools with the new score.
-- KEYS[1] cell base; touches base..node:<addr>, ready:*; reads session.
-- ARGV[1] heartbeat TTL (ms)   ARGV[2..] triples: address, score 0..10000, probation '1'|'0'
-- returns one 0|1 per node: 1 when it had a live record (otherwise its next hydration loads the score)
local base = KEYS[1]
local ttl = tonumber(ARGV[1])
local now = now_ms()
local out = {}
for i = 2, #ARGV, 3 do
  local addr = ARGV[i]
  local nkey = base .. 'node:' .. addr
  if redis.call('EXISTS', nkey) == 1 then
    redis.call('HSET', nkey, 'rep', ARGV[i + 1], 'prob', ARGV[i + 2])
    place(base, addr, now, ttl)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out

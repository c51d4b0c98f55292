-- Drops a node's gateway ownership only if this process still holds it (the node may have reconnected elsewhere).
-- KEYS[1] gw:node:<address>   ARGV[1] instance id
-- returns 1 when deleted, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

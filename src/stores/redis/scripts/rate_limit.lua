-- Token buckets per API key and per namespace, checked and taken together (both or neither).
-- KEYS[1] namespace bucket (RedisKeys.rateLimitBase(ns) .. 'ns')
-- KEYS[2] key bucket (RedisKeys.rateLimitBase(ns) .. 'key:<keyId>'); same {namespace} tag
-- ARGV[1] key rate (tokens/s)   ARGV[2] key burst (bucket size)
-- ARGV[3] namespace rate   ARGV[4] namespace burst   ARGV[5] cost (tokens, usually 1)
-- returns {allowed 0|1, remaining (of the tighter bucket), reset ms (until that bucket is full),
--          retry after ms (0 when allowed)}
local now = now_ms()
local cost = tonumber(ARGV[5])

local function state(key, rate, burst)
  local h = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(h[1]), tonumber(h[2])
  if not tokens then tokens, at = burst, now end
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  return tokens
end

local buckets = {
  {key = KEYS[1], rate = tonumber(ARGV[3]), burst = tonumber(ARGV[4])},
  {key = KEYS[2], rate = tonumber(ARGV[1]), burst = tonumber(ARGV[2])},
}
local allowed = true
local retry = 0
for _, b in ipairs(buckets) do
  b.tokens = state(b.key, b.rate, b.burst)
  if b.tokens < cost then
    allowed = false
    retry = math.max(retry, math.ceil((cost - b.tokens) * 1000 / b.rate))
  end
end
local remaining, reset = nil, 0
for _, b in ipairs(buckets) do
  if allowed then b.tokens = b.tokens - cost end
  redis.call('HSET', b.key, 'tokens', tostring(b.tokens), 'at', now)
  local full_in = math.ceil((b.burst - b.tokens) * 1000 / b.rate)
  redis.call('PEXPIRE', b.key, full_in + 1000)
  if remaining == nil or b.tokens < remaining then remaining = b.tokens end
  reset = math.max(reset, full_in)
end
return {allowed and 1 or 0, math.floor(remaining), reset, retry}

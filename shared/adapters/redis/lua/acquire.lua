-- A cluster-wide limit granted highest rank first. Called by each process's poll loop with only
-- the waiters it adds now; its earlier waiters stay queued in Redis until granted or withdrawn.
--
-- KEYS: holders zset (token -> granted at), waiters zset (token -> -rank; equal ranks by token,
--       which starts with the arrival time), owners hash (waiting or holding token -> process),
--       beats hash (process -> last seen; a process beats while it waits or holds), swept marker,
--       this process's own waiters (a zset as the waiters one)
-- ARGV: limit, now, holder_ttl, process_ttl, process id, count of tokens handed back (slots given
--       back, and waiters that gave up: either may hold a slot this process never heard of), those
--       tokens, then token, score pairs to add
-- Returns the tokens of this process that take a slot now (a slot handed back goes straight on
-- to the next waiter, in the same call), and those of the waiters to add that hold one already.
--
-- A waiter of this process takes a free slot when fewer waiters of higher rank (of any process)
-- are queued than slots are free. Waiters of equal rank are served in arrival order within a
-- process, and across processes by whichever asks first: a process busy elsewhere does not hold
-- free slots for its equal-ranked waiters until its next call.
local now = tonumber(ARGV[2])
local me = ARGV[5]
local stale_before = now - tonumber(ARGV[4])
redis.call('HSET', KEYS[4], me, now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
-- slots held by a process that stopped beating (killed) come back now, not after holder_ttl;
-- looked at once a second across the cluster (the holders are as many as the limit)
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', 1000) then
  for _, token in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local owner = redis.call('HGET', KEYS[3], token)
    -- a slot with no owner recorded is nobody's (an owner is written with every grant)
    if not owner or tonumber(redis.call('HGET', KEYS[4], owner) or '0') < stale_before then
      redis.call('ZREM', KEYS[1], token)
      redis.call('HDEL', KEYS[3], token)
    end
  end
end
local handed_back = tonumber(ARGV[6])
for i = 7, 6 + handed_back do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[6], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
end
-- a waiter that holds a slot already was granted it by this very call, sent before (a client
-- sends a command again when its answer is lost: a partition cut it): granted again, not queued
-- again. Queued again, it would wait for the slot it holds, until holder_ttl
local granted = {}
for i = 7 + handed_back, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    granted[#granted + 1] = ARGV[i]
  else
    redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 1], ARGV[i])
    redis.call('ZADD', KEYS[6], 'NX', ARGV[i + 1], ARGV[i])
    redis.call('HSET', KEYS[3], ARGV[i], me)
  end
end
for i = 1, 4 do
  redis.call('EXPIRE', KEYS[i], 86400)
end
redis.call('EXPIRE', KEYS[6], 3600)  -- a killed process's own list: nobody else reads it
local limit = tonumber(ARGV[1])
-- waiters of a stopped process (killed) go when they reach the top: nobody waits behind them
local swept = true
while swept do
  swept = false
  local free = limit - redis.call('ZCARD', KEYS[1])
  if free <= 0 then
    break
  end
  for _, token in ipairs(redis.call('ZRANGE', KEYS[2], 0, free - 1)) do
    local owner = redis.call('HGET', KEYS[3], token)
    local seen = owner and tonumber(redis.call('HGET', KEYS[4], owner) or '0') or 0
    if seen < stale_before then
      redis.call('ZREM', KEYS[2], token)
      redis.call('HDEL', KEYS[3], token)
      swept = true
    end
  end
end
local free = limit - redis.call('ZCARD', KEYS[1])
if free > 0 then
  local mine = redis.call('ZRANGE', KEYS[6], 0, free - 1, 'WITHSCORES')
  for i = 1, #mine, 2 do
    local token, score = mine[i], mine[i + 1]
    -- this process's waiters ahead of this one are granted already (or it would not get here)
    local better = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. score) - redis.call('ZCOUNT', KEYS[6], '-inf', '(' .. score)
    if better >= free then
      break
    end
    redis.call('ZREM', KEYS[2], token)
    redis.call('ZREM', KEYS[6], token)
    redis.call('ZADD', KEYS[1], now, token)
    redis.call('HSET', KEYS[3], token, me)  -- its owner stays recorded while it holds the slot
    granted[#granted + 1] = token
    free = free - 1
  end
end
return granted

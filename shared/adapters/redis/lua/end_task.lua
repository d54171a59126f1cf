-- A workflow task has ended: record its state and output, and release the tasks that were
-- waiting only for it. Atomic, so two workers ending tasks together never release a dependent
-- twice or never; idempotent, so a redelivered task releases nothing again.
--
-- The worker's metrics so far land in the same call, so a run seen finished has all of its
-- metrics in Redis (benchmarks read them when the run ends).
--
-- The task's cache entry, when it has one, is written in the same call too.
--
-- KEYS: nodes, counts, open, ended, outbox, left, outputs, transcripts, metric counters,
--       histograms, then the cache entry's key when there is one
-- ARGV: task id, state JSON, old status, new status, has output ("1"/"0"), output,
--       transcript JSON ("" for none), ttl seconds, metrics JSON ([counters, histograms] as
--       field -> amount), cache entry JSON, cache ttl seconds, the counter field a first end
--       adds 1 to, the one an end after the first adds 1 to ("" for none), then the task's
--       dependents
-- Returns {tasks left, {released tasks not yet published}, 1 for the first end of the task else 0};
-- {-1, {}, 0} when the run is gone (expired, or Redis lost it): then only the metrics are counted.
--
-- Every key a run writes expires with the run (ttl seconds), the set of ended tasks too; none is
-- written again once the run is gone, where it would never expire.
local tid = ARGV[1]
local first_dependent = 14
local ttl = tonumber(ARGV[8])
local metrics = cjson.decode(ARGV[9])
for i = 1, 2 do
  for field, amount in pairs(metrics[i]) do
    redis.call('HINCRBYFLOAT', KEYS[8 + i], field, amount)
  end
end
if redis.call('EXISTS', KEYS[6]) == 0 then
  return {-1, {}, 0}
end
local first = redis.call('SADD', KEYS[4], tid)
redis.call('EXPIRE', KEYS[4], ttl)
if first == 0 then
  -- ended before (a redelivered or re-dispatched message ran it again, or a lost reply was retried):
  -- counted apart, and what it released that was never published is handed back (its worker
  -- died between)
  if ARGV[13] ~= '' then
    redis.call('HINCRBYFLOAT', KEYS[9], ARGV[13], 1)
  end
  local unpublished = {}
  for i = first_dependent, #ARGV do
    if redis.call('SISMEMBER', KEYS[5], ARGV[i]) == 1 then
      unpublished[#unpublished + 1] = ARGV[i]
    end
  end
  return {tonumber(redis.call('GET', KEYS[6]) or '-1'), unpublished, 0}
end
if ARGV[12] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[9], ARGV[12], 1)
end
redis.call('HSET', KEYS[1], tid, ARGV[2])
if KEYS[11] then
  redis.call('SET', KEYS[11], ARGV[10], 'EX', ARGV[11])
end
if ARGV[3] ~= ARGV[4] then
  if ARGV[3] ~= '' then
    redis.call('HINCRBY', KEYS[2], ARGV[3], -1)
  end
  redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[7], tid, ARGV[6])
  redis.call('EXPIRE', KEYS[7], ttl)
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[8], tid, ARGV[7])
  redis.call('EXPIRE', KEYS[8], ttl)
end
local released = {}
for i = first_dependent, #ARGV do
  if redis.call('HINCRBY', KEYS[3], ARGV[i], -1) == 0 then
    released[#released + 1] = ARGV[i]
    redis.call('SADD', KEYS[5], ARGV[i])
  end
end
if #released > 0 then
  redis.call('EXPIRE', KEYS[5], ttl)
end
return {redis.call('DECR', KEYS[6]), released, 1}

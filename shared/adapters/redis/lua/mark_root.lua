-- A clean sync's root: every cache entry under it is kept at least as long as the root, so a root
-- that is present means every entry is. Nothing is recorded when an entry is gone.
--
-- KEYS: the root, then every cache entry under it
-- ARGV: run id, ttl seconds
-- Returns 1 when the root was recorded, 0 when an entry was missing.
for i = 2, #KEYS do
  if redis.call('EXPIRE', KEYS[i], ARGV[2]) == 0 then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1

-- A no-change sync, answered in one round trip (producer/nochange.py).
-- KEYS[1]: the last clean sync's root key; KEYS[2]: the metrics counters hash.
-- ARGV: field, increment pairs: the counts a full no-change sync would have added.
-- Only when the root is still there (so is every cache entry under it) are they counted; 1 then, else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 1, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1

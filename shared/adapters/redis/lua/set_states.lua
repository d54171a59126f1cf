-- Node states written over the state their writer read, and only over it (compare and set): two
-- workers that both took a node (a redelivered batch beside a partitioned worker's late copy) end
-- it once; the counters move from the status stored, so they stay exact.
--
-- KEYS[1]: the run's node states hash; KEYS[2]: its counts by status
-- ARGV: label, the status its writer read ('' for any), the new status, the new state's JSON; repeated
-- Returns how many were written: none once the run is gone (expired, or Redis lost it; a run's
-- states are all written when it is made), where they would never expire.
-- A state's status is read as text: its JSON may hold a lone surrogate escaped (a file name that is
-- not UTF-8), which cjson refuses; a state's fields are flat, and a quote inside a string is escaped.
local function status_of(raw)
  return string.match(raw, '"status"%s*:%s*"(%a+)"') or 'pending'
end

local written = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  return written
end
for i = 1, #ARGV, 4 do
  local label, expected, status, state = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local raw = redis.call('HGET', KEYS[1], label)
  local now = 'pending'
  if raw then
    now = status_of(raw)
  end
  if expected == '' or expected == now then
    redis.call('HSET', KEYS[1], label, state)
    if not raw then
      redis.call('HINCRBY', KEYS[2], status, 1)
    elseif now ~= status then
      redis.call('HINCRBY', KEYS[2], now, -1)
      redis.call('HINCRBY', KEYS[2], status, 1)
    end
    written = written + 1
  end
end
return written

-- Delete a claim only while it holds the releaser's token (Store.release).
-- A DEL sent again after its answer was lost must not delete a claim another caller made between
-- the two sends.
-- KEYS[1]: the claim; ARGV[1]: the token its claim call returned.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0

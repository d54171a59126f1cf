"""How big an answer from Studio may be, for both of its clients (shared/adapters/studio.py and the
no-change sync's listing, producer/nochange.py, which imports nothing heavy). Standard library only."""

# Studio's answer for 10,000 teams is about 30 MB; one past this is no Studio answer (a gzip bomb
# unpacks to it from half a megabyte), and is not read on
MAX_ANSWER_BYTES = 256 * 1024 * 1024

"""`producer bench`: measure the user's own setup, compare result sets, report.

run.py measures workflow runs on the workers (and holds what every benchmark samples: CPU, memory,
loopback bytes, the model limit), studio.py measures a Studio and a tree, stats.py is the pure
arithmetic (summaries, bootstrap comparisons, request latency histograms, advice)."""

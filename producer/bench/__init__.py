"""`producer bench`: measure the user's own setup, compare result sets, report.

run.py measures workflow runs on the workers (and holds what every benchmark samples: CPU, memory,
loopback bytes, the machine and the versions); studio.py measures a Studio and a tree; results.py
writes a result set and is the one place that reads one back (load: a ResultSet, or InvalidInput
naming the file); stats.py is the pure arithmetic (summaries, bootstrap comparisons, request latency
histograms, advice); report.py writes report.html and report.md with the charts of charts.py
(means, wall time, resources) and latency_charts.py (distributions)."""

"""Redis: clients that ride out an outage (conn), every key name (keys), run state and the result
cache (store), the cluster-wide model limit (semaphore), the metrics' sink (metrics), what the
broker's lists hold (broker_view), kombu's Redis transport (broker), the no-change answer's
raw reader (resp), the embedded server (server), and the Lua scripts (lua/).

Importing this package imports nothing: keys and resp are read before redis-py is imported."""

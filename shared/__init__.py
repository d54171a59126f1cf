"""Code shared by the producer and the workers: config models, the pure core, Redis and Studio clients."""

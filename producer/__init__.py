"""The producer: scans a config tree, plans the work and enqueues it as Celery chords."""

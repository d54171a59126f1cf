"""The pure core: reading and validating configs, references, the dependency graph, content keys,
workflow scheduling, the retry policy and the run vocabulary. No I/O here (no Redis, HTTP, files
or environment): everything is tested without servers. The adapters that talk to the world are
beside it in shared/ (store, studio, semaphore, metrics, settings) and in workers/."""

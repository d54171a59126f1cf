"""When this worker process started, on the clock its in-flight records use (imported with the
app, before any task runs): what its node name holds from before was an earlier process's, one
that died (producer/recovery.py, the create locks of shared/adapters/redis/studio_rows.py)."""

import time

PROCESS_STARTED = time.time()

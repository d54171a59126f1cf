"""A worker started for one command (producer/embedded.py) stops when that command's process is
gone, even one killed with SIGKILL that could not stop it: otherwise it would retry its vanished
Redis forever. Workers started by `celery -A workers worker` have no AGENTQ_PARENT_PID and no
lifeline."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping

CHECK_EVERY = 1.0  # seconds
GRACE = 10.0  # seconds of warm shutdown before the process ends regardless


def watch_parent(environ: Mapping[str, str] = os.environ) -> threading.Thread | None:
    parent = environ.get("AGENTQ_PARENT_PID", "")
    if not parent.isdigit():
        return None

    def watch() -> None:
        while os.getppid() == int(parent):  # a child whose parent ended is given another one
            time.sleep(CHECK_EVERY)
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
        time.sleep(GRACE)  # which waits for a broker that may be gone with the producer
        os._exit(1)

    thread = threading.Thread(target=watch, name="agentq-lifeline", daemon=True)
    thread.start()
    return thread

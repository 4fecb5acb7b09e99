"""A worker that needs 2 s to finish its job after SIGTERM, and says so."""

import os
import signal
import sys
import time

RELEASE = os.environ.get("PUSHDOCK_RELEASE", "?")


def on_term(signum: int, frame: object) -> None:
    started = time.monotonic()
    print(f"worker {RELEASE}: SIGTERM, finishing the job", flush=True)
    time.sleep(2)
    print(f"worker {RELEASE}: job finished {time.monotonic() - started:.1f}s after SIGTERM", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print(f"worker {RELEASE}: started", flush=True)
while True:
    time.sleep(1)

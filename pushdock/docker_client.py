"""This process's Docker engine client, for every package that talks to the engine (builders, schedulers, the
pipeline's pruning): one client, so one API version probe (`GET /version`, 10-30 ms) per process, not one per
package on the path of every push. A forked child makes its own (a parent's connections are not its to use)."""

from __future__ import annotations

import os
import threading
from typing import Any

_clients: dict[int, Any] = {}
_lock = threading.Lock()


def client() -> Any:
    """The docker SDK client of this process, made on first use; docker.errors.DockerException if it cannot be."""
    pid = os.getpid()
    with _lock:
        found = _clients.get(pid)
        if found is None:
            import docker  # noqa: PLC0415 -- start-up: docker loads when first used

            # Followed log streams hold one connection each: a larger pool avoids churn.
            found = docker.from_env(max_pool_size=32)
            _clients.clear()  # a parent's client is unusable after fork
            _clients[pid] = found
        return found

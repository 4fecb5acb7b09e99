"""Engine events that may move a swarm task, for `serve`'s follower (hooks.pipeline.follow_upstreams).

Instead of looking every few seconds, the follower is woken by the manager engine's event stream: a task
container starting or dying on this node, a node changing state (a worker lost or back), a service updated.
A task that moves on another node shows here as its node's event or as its replacement starting on this one;
what the stream cannot see (a task restarted on a healthy remote node) the follower's slow fallback look finds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from schedulers import engine as eng

TYPES = ["container", "node", "service"]
CONTAINER_ACTIONS = {"start", "die", "kill", "stop", "health_status"}
RETRY = 2.0


def moves(event: dict[str, Any]) -> bool:
    """Whether the event can change where a task of a swarm service answers."""
    kind, action = event.get("Type"), str(event.get("Action") or "")
    if kind in ("node", "service"):
        return True
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    task = "com.docker.swarm.service.id" in attrs
    return kind == "container" and task and action.split(":", maxsplit=1)[0] in CONTAINER_ACTIONS


def watch(wake: Callable[[], None], done: threading.Event) -> None:
    """Call wake() on every event that `moves` until done is set; reconnects after the engine goes away."""
    interrupted = False
    while not done.is_set():
        try:
            stream = eng.client().events(decode=True, filters={"type": TYPES}, since=int(time.time()))
            if interrupted:
                wake()  # whatever happened while the stream was down
                interrupted = False
            for event in stream:
                if done.is_set():
                    return
                if moves(event):
                    wake()
        except Exception as e:  # the engine restarting: look again in a moment
            logger.debug("engine events interrupted", error=str(e))
        interrupted = True
        done.wait(RETRY)

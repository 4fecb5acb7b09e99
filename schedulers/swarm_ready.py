"""Readiness of a release's new services: every task placed, running, and (web) answering HTTP.

The rule is docker-local's (schedulers/readiness.py): a web task is ready after two consecutive
answers below 500 on its published port (node address:port); another task is ready once it has run
for a settle time. Swarm adds ways to fail that are caught at once instead of at the timeout: a task
that failed, was rejected (no such image on its node) or exited, and a task the swarm cannot place
("no suitable node (max replicas per node limit exceed)") for PENDING_GRACE seconds. A crash during
the check fails the deploy even though swarm would restart the task: a crash while starting stays a
crash, not a restart loop that hides it. With the routing mesh, the mesh port must answer too.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushdock.routing import Upstream
from schedulers import docker_engine as eng
from schedulers import swarm_engine as sw
from schedulers import swarm_nodes as sn
from schedulers.readiness import (
    PROBE_INTERVAL,
    PROBE_SUCCESSES,
    PROBE_TIMEOUT,
    READY_PATH,
    WORKER_SETTLE,
    NotReady,
)

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Release

PENDING_GRACE = 3.0  # seconds a task may stay unplaceable before the deploy gives up
MESH_WAIT = 5.0  # seconds the mesh may take to route to tasks that answer on their own ports


@dataclass
class NewService:
    process: str
    service: Any
    replicas: int


def wait_ready(
    ctx: Context, release: Release, new: list[NewService], by_node: dict[str, sn.Node], *, mesh: bool,
    on_ready: Any = None, history: bool = False,
) -> list[Upstream]:
    """Return the web upstreams once every task is ready; NotReady (with log lines) otherwise.

    `history`: the services ran before (reconcile). Their tasks at the first look may die without
    failing the check (swarm replaces them); the replacements, like every new task, must not fail.
    """
    watch = _Watch(ctx, release, new, by_node, on_ready)
    if history:
        watch.past = {str(t["ID"]) for t in sw.tasks_of([n.service for n in new])}
    try:
        upstreams = watch.run()
    finally:
        watch.close()
    if mesh and upstreams:
        return _mesh_upstreams(new, by_node)
    return upstreams


class _Watch:
    def __init__(
        self, ctx: Context, release: Release, new: list[NewService], by_node: dict[str, sn.Node], on_ready: Any
    ) -> None:
        self.release = release
        self.new = new
        self.by_node = by_node
        self.on_ready = on_ready or (lambda text: None)
        self.timeout = ctx.settings.ready_timeout
        self.deadline = time.monotonic() + self.timeout
        self.abort = threading.Event()
        web = sum(n.replicas for n in new if n.process == "web")
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(32, web)), thread_name_prefix="pushdock-probe")
        self.probes: dict[str, Future[bool]] = {}
        self.upstream: dict[str, Upstream] = {}
        self.running_since: dict[str, float] = {}
        self.pending_since: dict[str, float] = {}
        self.announced: set[str] = set()
        self.past: set[str] = set()

    def close(self) -> None:
        self.abort.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def run(self) -> list[Upstream]:
        process_of = {n.service.id: n for n in self.new}
        while True:
            now = time.monotonic()
            tasks = sw.tasks_of([n.service for n in self.new])
            ready: dict[str, list[str]] = {n.service.id: [] for n in self.new}
            for t in tasks:
                n = process_of.get(str(t.get("ServiceID")))
                if n is None:
                    continue
                name = f"{n.process}.{t.get('Slot')}"
                why = sw.failure_of(t, self.by_node)
                if why is not None and str(t["ID"]) not in self.past:
                    raise NotReady(f"{name} {why}", task_log_lines(n.service, str(t["ID"])))
                if not sw.is_current(t):
                    continue
                if self._task_ready(n, t, name, now):
                    ready[n.service.id].append(str(t["ID"]))
            if all(len(ready[n.service.id]) >= n.replicas for n in self.new):
                return sorted(self.upstream[tid] for n in self.new if n.process == "web"
                              for tid in ready[n.service.id][: n.replicas])
            if now >= self.deadline:
                raise self._timeout(tasks, process_of)
            time.sleep(PROBE_INTERVAL)

    def _task_ready(self, n: NewService, t: dict[str, Any], name: str, now: float) -> bool:
        tid = str(t["ID"])
        problem = sw.pending_problem(t)
        if problem is not None:
            since = self.pending_since.setdefault(tid, now)
            if now - since >= PENDING_GRACE:
                raise NotReady(f"{name} cannot be placed: {problem}")
            return False
        if sw.task_state(t) != "running":
            return False
        if n.process != "web":
            since = self.running_since.setdefault(tid, now)
            done = now - since >= WORKER_SETTLE
        else:
            upstream = sw.task_upstream(t, self.by_node)
            if upstream is None:
                return False
            self.upstream[tid] = upstream
            if tid not in self.probes:
                self.probes[tid] = self.pool.submit(_probe_until_ready, upstream, self.abort, self.deadline)
            done = self.probes[tid].done() and self.probes[tid].result()
        if done and tid not in self.announced:
            self.announced.add(tid)
            where = f" on {self.upstream[tid]}" if tid in self.upstream else ""
            self.on_ready(f"{name} ready{where}")
        return bool(done)

    def _timeout(self, tasks: list[dict[str, Any]], process_of: dict[str, NewService]) -> NotReady:
        port = eng.container_port(self.release)
        for t in tasks:
            n = process_of.get(str(t.get("ServiceID")))
            if n is None or not sw.is_current(t):
                continue
            name = f"{n.process}.{t.get('Slot')}"
            state = sw.task_state(t)
            if n.process == "web" and state == "running":
                return NotReady(
                    f"{name} did not answer HTTP within {self.timeout:g}s (it must listen on 0.0.0.0:$PORT; "
                    f"PORT={port})", task_log_lines(n.service, str(t["ID"])),
                )
            if state != "running":
                return NotReady(f"{name} is still {state} after {self.timeout:g}s")
        return NotReady(f"the release's tasks did not start within {self.timeout:g}s")


def _probe_until_ready(upstream: Upstream, abort: threading.Event, deadline: float) -> bool:
    successes = 0
    while not abort.is_set() and time.monotonic() < deadline:
        status = probe(upstream, READY_PATH, min(PROBE_TIMEOUT, max(0.1, deadline - time.monotonic())))
        successes = successes + 1 if status is not None and status < 500 else 0
        if successes >= PROBE_SUCCESSES:
            return True
        abort.wait(PROBE_INTERVAL)
    return False


def probe(upstream: Upstream, path: str, timeout: float) -> int | None:
    """HTTP status of GET path, or None when nothing answered (readiness.py's probe)."""
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "pushdock-readiness", "Connection": "close"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _mesh_upstreams(new: list[NewService], by_node: dict[str, sn.Node]) -> list[Upstream]:
    """Every schedulable node at each web service's mesh port, once the mesh answers here."""
    upstreams = []
    for n in new:
        if n.process != "web":
            continue
        n.service.reload()
        port = sw.mesh_port(n.service)
        if port is None:
            raise NotReady(f"{n.service.name} has no routing-mesh port")
        local = Upstream("127.0.0.1", port)
        if not _probe_until_ready(local, threading.Event(), time.monotonic() + MESH_WAIT):
            raise NotReady(
                f"the routing mesh does not answer on port {port} (it needs IPVS in the kernel): "
                "turn it off with `scheduler:set APP routing-mesh off`"
            )
        upstreams += [Upstream(node.address, port) for node in by_node.values() if node.schedulable]
    return sorted(set(upstreams))


def task_log_lines(service: Any, task_id: str, n: int = 5) -> list[str]:
    """The task's last log lines, read through the service's logs (works for tasks on any node)."""
    import docker
    import requests

    try:
        raw = eng.client().api.service_logs(service.id, details=True, stdout=True, stderr=True, tail=50,
                                            is_tty=False)
        lines = []
        for chunk in raw:
            for line in chunk.decode("utf-8", "replace").splitlines():
                details, _, text = line.partition(" ")
                if f"com.docker.swarm.task.id={task_id}" in details:
                    lines.append(text)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return []  # best effort: the service may be gone already
    return lines[-n:]

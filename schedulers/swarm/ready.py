"""Readiness of a release's new services: every task placed, running, (web) answering HTTP, then checked.

The rule is docker-local's (schedulers/readiness.py): a web task is ready after two consecutive
answers below 500 on its published port (node address:port); another task is ready once it has run
for a settle time. Then the release's app.json healthchecks of the process type run against each task
(schedulers/healthchecks.run_all, as on docker-local): path checks over the task's published port,
command checks in its container, uptime checks on it. The container is this engine's for a task on
this node, the node's engine (`swarm:set NODE engine URL`) for a task elsewhere; a task on a node
whose engine pushdock cannot reach is seen through the manager (state, start time, service logs):
its path and uptime checks run, its command checks are skipped, and the deploy output says so.
`checks:skip` replaces all of this with "the task runs" (and no routing-mesh probe).

Swarm adds ways to fail that are caught at once instead of at the timeout: a task that failed, was
rejected (no such image on its node) or exited, and a task the swarm cannot place ("no suitable node
(max replicas per node limit exceed)") for PENDING_GRACE seconds. A crash during the check fails the
deploy even though swarm would restart the task: a crash while starting stays a crash, not a restart
loop that hides it. With the routing mesh, the mesh port must answer too. The readiness timeout bounds
the default readiness; app.json checks are bounded by their own attempts, as on docker-local.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushdock.routing import Upstream
from schedulers import crash_output, healthchecks
from schedulers import engine as eng
from schedulers.engine import NotReady, Started
from schedulers.readiness import (
    PROBE_INTERVAL,
    PROBE_SUCCESSES,
    PROBE_TIMEOUT,
    READY_PATH,
    WORKER_SETTLE,
    probe,
)
from schedulers.swarm import engine as sw
from schedulers.swarm import nodes as sn

if TYPE_CHECKING:
    from pushdock.checks import Healthcheck
    from pushdock.context import Context
    from pushdock.state import Release

PENDING_GRACE = 3.0  # seconds a task may stay unplaceable before the deploy gives up
MESH_WAIT = 5.0  # seconds the mesh may take to route to tasks that answer on their own ports


@dataclass
class NewService:
    process: str
    service: Any
    replicas: int
    checks: tuple[Healthcheck, ...] = ()  # app.json healthchecks each task must pass


def wait_ready(
    ctx: Context, release: Release, new: list[NewService], by_node: dict[str, sn.Node], *, mesh: bool,
    on_ready: Any = None, history: bool = False, skip: bool = False,
) -> list[Upstream]:
    """Return the web upstreams once every task is ready and passed its checks; NotReady (with log lines) otherwise.

    `history`: the services ran before (reconcile). Their tasks at the first look may die without
    failing the check (swarm replaces them); the replacements, like every new task, must not fail.
    `skip` (`checks:skip`): ready means running; no probe, no app.json checks.
    """
    watch = _Watch(ctx, release, new, by_node, on_ready, skip=skip)
    if history:
        watch.past = {str(t["ID"]) for t in sw.tasks_of([n.service for n in new])}
    try:
        upstreams = watch.run()
    finally:
        watch.close()
    if mesh and upstreams:
        return _mesh_upstreams(new, by_node, probe_first=not skip)
    return upstreams


class _Watch:
    def __init__(
        self, ctx: Context, release: Release, new: list[NewService], by_node: dict[str, sn.Node], on_ready: Any,
        *, skip: bool,
    ) -> None:
        self.release = release
        self.new = new
        self.by_node = by_node
        self.on_ready = on_ready or (lambda text: None)
        self.skip = skip
        self.timeout = ctx.settings.ready_timeout
        self.deadline = time.monotonic() + self.timeout
        self.abort = threading.Event()
        # One thread per task at most: its probe, then its app.json checks.
        tasks = sum(n.replicas for n in new if n.process == "web" or n.checks)
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(32, tasks)), thread_name_prefix="pushdock-probe")
        self.probes: dict[str, Future[bool]] = {}
        self.checks: dict[str, Future[list[str]]] = {}
        self.upstream: dict[str, Upstream] = {}
        self.running_since: dict[str, float] = {}
        self.pending_since: dict[str, float] = {}
        self.announced: set[str] = set()
        self.past: set[str] = set()
        self.engines: dict[str, Any] = {}  # node id -> its engine's client (command checks on other nodes)
        self.engines_lock = threading.Lock()

    def close(self) -> None:
        self.abort.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for client in self.engines.values():
            client.close()

    def run(self) -> list[Upstream]:
        process_of = {n.service.id: n for n in self.new}
        while True:
            now = time.monotonic()
            tasks = sw.tasks_of([n.service for n in self.new])
            ready: dict[str, list[str]] = {n.service.id: [] for n in self.new}
            checking: dict[str, int] = {n.service.id: 0 for n in self.new}
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
                state = self._task_ready(n, t, name, now)
                if state == "ready":
                    ready[n.service.id].append(str(t["ID"]))
                elif state == "checking":
                    checking[n.service.id] += 1
            if all(len(ready[n.service.id]) >= n.replicas for n in self.new):
                return sorted(self.upstream[tid] for n in self.new if n.process == "web"
                              for tid in ready[n.service.id][: n.replicas])
            # The timeout is the default readiness's: tasks in their app.json checks are bounded by those.
            late = any(len(ready[n.service.id]) + checking[n.service.id] < n.replicas for n in self.new)
            if now >= self.deadline and late:
                raise self._timeout(tasks, process_of)
            time.sleep(PROBE_INTERVAL)

    def _task_ready(self, n: NewService, t: dict[str, Any], name: str, now: float) -> str:
        """One of `ready`, `checking` (its app.json checks run) or `` (not yet); NotReady when it cannot be."""
        tid = str(t["ID"])
        problem = sw.pending_problem(t)
        if problem is not None:
            since = self.pending_since.setdefault(tid, now)
            if now - since >= PENDING_GRACE:
                raise NotReady(f"{name} cannot be placed: {problem}")
            return ""
        if sw.task_state(t) != "running":
            return ""
        if n.process == "web":
            upstream = sw.task_upstream(t, self.by_node)
            if upstream is None:
                return ""
            self.upstream[tid] = upstream
        notes: list[str] = []
        if self.skip:
            done, notes = True, ["checks skipped"]
        elif n.process != "web":
            since = self.running_since.setdefault(tid, now)
            done = now - since >= WORKER_SETTLE
        else:
            if tid not in self.probes:
                self.probes[tid] = self.pool.submit(_probe_until_ready, self.upstream[tid], self.abort, self.deadline)
            done = self.probes[tid].done() and self.probes[tid].result()
        if done and n.checks and not self.skip:
            if tid not in self.checks:
                self.checks[tid] = self.pool.submit(self._run_checks, n, t, name)
            if not self.checks[tid].done():
                return "checking"
            notes = self.checks[tid].result()  # raises the check's NotReady
        if done and tid not in self.announced:
            self.announced.add(tid)
            where = f" on {self.upstream[tid]}" if tid in self.upstream else ""
            self.on_ready(f"{name} ready{where}" + (f" ({'; '.join(notes)})" if notes else ""))
        return "ready" if done else ""

    def _run_checks(self, n: NewService, t: dict[str, Any], name: str) -> list[str]:
        """docker-local's app.json checks on one task; notes (passed, warned, skipped). NotReady on a failure."""
        tid = str(t["ID"])
        target, unreachable = self._container(t, name)
        checks, notes = list(n.checks), []
        if target is None:
            notes = [f"command check {h.name} skipped: {unreachable}" for h in checks if h.command is not None]
            checks = [h for h in checks if h.command is None]
            target = TaskView(n.service, t)
        started = Started(eng.Slot(n.process, int(t.get("Slot") or 0)), target, self.upstream.get(tid))
        return healthchecks.run_all(started, checks, self.abort) + notes

    def _container(self, t: dict[str, Any], name: str) -> tuple[Any, str]:
        """The task's container (this engine's, or its node's engine's), or None and why not."""
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used
        import requests  # noqa: PLC0415 -- start-up: requests loads when first used

        node = self.by_node.get(str(t.get("NodeID") or ""))
        cid = ((t.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if node is None or not cid:
            return None, f"{name} runs on a node pushdock does not know"
        if node.local:
            return eng.client().containers.get(cid), ""
        if not node.engine:
            return None, (f"{name} runs on node {node.hostname}, whose engine pushdock cannot reach "
                          "(`swarm:set NODE engine URL`)")
        try:
            with self.engines_lock:
                if node.id not in self.engines:
                    self.engines[node.id] = docker.DockerClient(base_url=node.engine, timeout=60)
            return self.engines[node.id].containers.get(cid), ""
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return None, f"{name} runs on node {node.hostname}, whose engine {node.engine} failed: {eng.one_line(e)}"

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


def _mesh_upstreams(new: list[NewService], by_node: dict[str, sn.Node], *, probe_first: bool) -> list[Upstream]:
    """Every schedulable node at each web service's mesh port, once the mesh answers here (if `probe_first`)."""
    upstreams = []
    for n in new:
        if n.process != "web":
            continue
        n.service.reload()
        port = sw.mesh_port(n.service)
        if port is None:
            raise NotReady(f"{n.service.name} has no routing-mesh port")
        local = Upstream("127.0.0.1", port)
        if probe_first and not _probe_until_ready(local, threading.Event(), time.monotonic() + MESH_WAIT):
            raise NotReady(
                f"the routing mesh does not answer on port {port} (it needs IPVS in the kernel): "
                "turn it off with `scheduler:set APP routing-mesh off`"
            )
        upstreams += [Upstream(node.address, port) for node in by_node.values() if node.schedulable]
    return sorted(set(upstreams))


def task_log_lines(service: Any, task_id: str, n: int = crash_output.SHOWN) -> list[str]:
    """The task's last meaningful log lines (crash_output), read through the service's logs (any node)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        raw = eng.client().api.service_logs(service.id, details=True, stdout=True, stderr=True, tail=crash_output.TAIL,
                                            is_tty=False)
        lines = []
        for chunk in raw:
            for line in chunk.decode("utf-8", "replace").splitlines():
                details, _, text = line.partition(" ")
                if f"com.docker.swarm.task.id={task_id}" in details:
                    lines.append(text)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return []  # best effort: the service may be gone already
    return crash_output.last_lines(lines, [], n)  # one merged stream: noise dropped, order kept


class TaskView:
    """A task on a node whose engine pushdock cannot reach, seen through the manager: as much of a container
    as path and uptime checks read (state, start time, exit status, logs). No exec: command checks skip it."""

    def __init__(self, service: Any, task: dict[str, Any]) -> None:
        self.service = service
        self.id = str(task["ID"])
        self.status = ""
        self.attrs: dict[str, Any] = {}
        self._read(task)

    def _read(self, task: dict[str, Any]) -> None:
        state = sw.task_state(task)
        status = task.get("Status") or {}
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        running = state == "running" and sw.is_current(task)
        if running or state not in ("running", "failed", "complete", "shutdown"):
            self.status = state
        else:
            self.status = "exited" if state != "running" else "shutting down"  # running, but being replaced
        self.attrs = {"State": {"Status": self.status, "ExitCode": "?" if code is None else code,
                                "StartedAt": str(status.get("Timestamp") or "") if running else ""},
                      "RestartCount": 0}  # swarm never restarts a task's container: it makes a new task

    def reload(self) -> None:
        self._read(eng.client().api.inspect_task(self.id))

    def logs(self, tail: int = 5) -> bytes:
        return "\n".join(task_log_lines(self.service, self.id, tail)).encode()

"""The swarm scheduler through `pushdock serve` and its nginx: on this machine's single-node swarm, then on two
nodes (tests/multinode.py: this engine as the manager, a second dockerd in its own network namespace as the
worker, images through Debian's docker-registry). `--two-nodes` runs only the second part.

Measures: push-to-live (first and warm), ps:scale 1->3 (a release with the same image: the scheduler's
own deploy time), a redeploy and a docker-local -> swarm move under a bounded load of non-keep-alive
GETs (failed requests, and the swap window: from the first answer of the new release to the last
answer of the old one). Swarm mode is turned on only if it is off, and off again at the end.
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import write_section
from tests.harness import Server, free_port, http_get, unique


class Recorder:
    """Non-keep-alive GETs in threads, each answer recorded with its time."""

    def __init__(self, srv: Server, app: str, threads: int = 2, max_seconds: float = 90) -> None:
        self.srv, self.app = srv, app
        self.answers: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]

    def loop(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                status, body = http_get(self.srv.proxy_port, f"{self.app}.localhost", timeout=10)
                key = body if status == 200 else f"HTTP {status}"
            except (OSError, http.client.HTTPException) as e:  # a reset, or an answer cut short
                key = type(e).__name__
            with self.lock:
                self.answers.append((time.monotonic(), key))

    def __enter__(self) -> Recorder:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def summary(self, old: str, new: str) -> tuple[int, int, float]:
        """(requests, failed, swap window in ms: last old answer minus first new answer)."""
        failed = sum(1 for _, k in self.answers if k not in (old, new))
        first_new = min(t for t, k in self.answers if k == new)
        last_old = max(t for t, k in self.answers if k == old)
        return len(self.answers), failed, (last_old - first_new) * 1000


def until_body(srv: Server, app: str, body: str, t0: float) -> float:
    while time.monotonic() - t0 < 120:
        try:
            if http_get(srv.proxy_port, f"{app}.localhost", timeout=2)[1] == body:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{body!r} never served")


def run(srv: Server) -> list[str]:
    app = unique("swbench")
    work = srv.app_repo(app)
    t0 = time.monotonic()
    assert srv.push(work, app).returncode == 0
    first = until_body(srv, app, "hello from pushdock", t0)
    warm = []
    for i in range(3):
        body = f"warm push {i}"
        srv.commit(work, body, {"body.txt": body + "\n"})
        t0 = time.monotonic()
        proc = subprocess.Popen(["git", "push", srv.remote(app), "main"], cwd=work, env=srv.git_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        warm.append(until_body(srv, app, body, t0))
        assert proc.wait(120) == 0
    t0 = time.monotonic()
    srv.cli("ps:scale", app, "web=3")
    scale = time.monotonic() - t0
    srv.commit(work, "under load", {"body.txt": "under load\n"})
    with Recorder(srv, app) as rec:
        time.sleep(1)
        t0 = time.monotonic()
        assert srv.push(work, app).returncode == 0
        push_load = time.monotonic() - t0
        time.sleep(1)
    requests, failed, window = rec.summary("warm push 2", "under load")

    moved = unique("swmove")
    mwork = srv.app_repo(moved, body="on docker-local")
    srv.cli("apps:create", moved)
    srv.cli("scheduler:set", moved, "selected", "docker-local")
    assert srv.push(mwork, moved).returncode == 0
    with Recorder(srv, moved) as mrec:
        time.sleep(1)
        t0 = time.monotonic()
        srv.cli("scheduler:set", moved, "selected", "swarm")
        move = time.monotonic() - t0
        time.sleep(1)
    m_requests = len(mrec.answers)
    m_failed = sum(1 for _, k in mrec.answers if k != "on docker-local")
    for a in (app, moved):
        srv.cli("apps:destroy", a, "--force")
    med = statistics.median
    return [
        "| measure | value |",
        "|---|---|",
        f"| first push to live (build + swarm deploy + nginx) | {first:.2f} s |",
        f"| warm push to live, median of 3 (min–max) | {med(warm):.2f} s ({min(warm):.2f}–{max(warm):.2f}) |",
        f"| `ps:scale web=3` from 1 (new release, same image: the scheduler's deploy) | {scale:.2f} s |",
        f"| redeploy of web=3 under load: push duration | {push_load:.2f} s |",
        f"| redeploy under load: requests / failed | {requests} / {failed} |",
        f"| redeploy under load: swap window (last old answer − first new answer) | {window:.0f} ms |",
        f"| `scheduler:set APP selected swarm` (move from docker-local) under load | {move:.2f} s, "
        f"{m_requests} requests / {m_failed} failed |",
    ]


def poll_until(what, timeout: float = 180.0, every: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not what():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(every)
    return time.monotonic()


def two_node_run(srv: Server, cluster) -> list[str]:  # type: ignore[no-untyped-def]
    from pushdock.context import Context
    from pushdock.settings import Settings

    ctx = Context(settings=Settings(data_dir=srv.data))
    worker = cluster.worker
    engine = cluster.manager

    def hosts(app: str) -> list[str]:
        return sorted(u.host for u in ctx.proxy().routes(ctx)[app].upstreams)

    def node_state() -> str:
        return engine.nodes.get(worker.node_id).attrs["Status"]["State"]

    app = unique("mnbench")
    work = srv.app_repo(app)
    t0 = time.monotonic()
    assert srv.push(work, app).returncode == 0
    first = until_body(srv, app, "hello from pushdock", t0)
    t0 = time.monotonic()
    srv.cli("ps:scale", app, "web=2")
    scale = time.monotonic() - t0
    spread = hosts(app)
    warm = []
    for i in range(3):
        body = f"warm push {i}"
        srv.commit(work, body, {"body.txt": body + "\n"})
        t0 = time.monotonic()
        assert srv.push(work, app).returncode == 0
        warm.append(time.monotonic() - t0)
    last = "warm push 2"

    name = f"pd-{worker.name}"
    with Recorder(srv, app) as rec:
        time.sleep(1)
        t0 = time.monotonic()
        srv.cli("swarm:drain", name)
        drain = time.monotonic() - t0
        time.sleep(1)
    d_requests, d_failed = len(rec.answers), sum(1 for _, k in rec.answers if k != last)
    drained = hosts(app)
    srv.cli("swarm:activate", name)
    srv.cli("ps:restart", app)

    losses = []
    for heartbeat in (5, 1):
        engine.swarm.update(dispatcher_heartbeat_period=heartbeat * 1_000_000_000)
        assert worker.addr in hosts(app), hosts(app)
        with Recorder(srv, app, max_seconds=180) as rec:
            time.sleep(1)
            t0 = time.monotonic()
            worker.stop_engine()
            stopped = time.monotonic() - t0
            down = poll_until(lambda: node_state() == "down") - t0
            routed = poll_until(lambda: hosts(app) == ["127.0.0.1", "127.0.0.1"], every=0.02) - t0
            time.sleep(1)
        errors = Counter(k for _, k in rec.answers if k != last)
        failed = sum(errors.values()) and f"{sum(errors.values())} ({', '.join(f'{k} ×{n}' for k, n in errors.items())})"
        losses.append((heartbeat, stopped, down, routed, routed - down, len(rec.answers), failed or 0))
        worker.start_engine()
        poll_until(lambda: node_state() == "ready", every=0.2)
        srv.cli("ps:restart", app)

    # a push while the worker is down
    worker.stop_engine()
    poll_until(lambda: node_state() == "down", every=0.2)
    srv.commit(work, "down", {"body.txt": "while a node is down\n"})
    t0 = time.monotonic()
    ok = srv.push(work, app).returncode == 0
    push_down = time.monotonic() - t0
    worker.start_engine()
    poll_until(lambda: node_state() == "ready", every=0.2)
    srv.cli("apps:destroy", app, "--force")

    med = statistics.median
    lines = [
        "| measure (two nodes: manager + worker) | value |",
        "|---|---|",
        f"| first push to live (build, registry push, deploy) | {first:.2f} s |",
        f"| `ps:scale web=2` (worker pulls the image by digest) | {scale:.2f} s; routed to {', '.join(spread)} |",
        f"| warm push, median of 3 (min–max) | {med(warm):.2f} s ({min(warm):.2f}–{max(warm):.2f}) |",
        f"| `swarm:drain` of the worker under load | {drain:.2f} s, {d_requests} requests / {d_failed} failed; "
        f"then routed to {', '.join(drained)} |",
    ]
    for heartbeat, stopped, down, routed, after, requests, failed in losses:
        lines.append(
            f"| worker engine stopped under load, heartbeat {heartbeat} s: node down / both tasks on the manager "
            f"and routed (after the down) | {down:.1f} s / {routed:.1f} s (+{after:.2f} s); engine stop took "
            f"{stopped:.1f} s; {requests} requests / {failed} failed |")
    lines.append(f"| push while the worker is down | {'deployed' if ok else 'FAILED'} in {push_down:.2f} s |")
    return lines


def two_nodes_main() -> None:
    from tests.multinode import two_nodes

    with tempfile.TemporaryDirectory(prefix="pushdock-bench-mn-") as tmp, two_nodes(Path(tmp) / "cluster") as cluster:
        srv = Server(Path(tmp), PUSHDOCK_SCHEDULER="swarm").start()
        try:
            srv.add_key()
            srv.cli("swarm:registry", "set", cluster.registry)
            lines = two_node_run(srv, cluster)
        finally:
            for s in cluster.manager.services.list(filters={"label": f"pushdock.data-dir={srv.data.absolute()}"}):
                s.remove()
            srv.stop()
    body = "\n".join(lines) + (
        "\n\nThe manager is this machine's engine; the worker a second dockerd in its own network namespace "
        "(scripts/swarm-node.sh, veth 10.231.N.0/30), so both share the same 2 cores. Images go through Debian's "
        "docker-registry (TLS) and are pulled by digest. Load: 2 threads of non-keep-alive GETs through nginx. "
        "Node loss: swarm declares the node down after a few missed heartbeats (`swarm:init --heartbeat`; the worker's engine itself takes ~4.5 s to stop), "
        "then starts the replacement tasks on the manager; serve's follower, woken by the engine's events, routes "
        "them once they answer. nginx retries a refused connection on the other task, so no request failed in these runs (a request cut mid-answer by a dying node would; none was).\n")
    print(body)
    write_section("bench/swarm.py --two-nodes", body)


def main() -> None:
    import docker

    if sys.argv[1:] == ["--two-nodes"]:
        two_nodes_main()
        return

    engine = docker.from_env()
    mine = engine.info()["Swarm"]["LocalNodeState"] == "inactive"
    if mine:
        engine.swarm.init(advertise_addr="127.0.0.1", listen_addr=f"127.0.0.1:{free_port()}")
    try:
        with tempfile.TemporaryDirectory(prefix="pushdock-bench-swarm-") as tmp:
            srv = Server(Path(tmp), PUSHDOCK_SCHEDULER="swarm").start()
            try:
                srv.add_key()
                lines = run(srv)
            finally:
                for s in engine.services.list(filters={"label": f"pushdock.data-dir={srv.data.absolute()}"}):
                    s.remove()
                srv.stop()
    finally:
        if mine:
            engine.swarm.leave(force=True)
            time.sleep(1)
            for n in engine.networks.list(names=["docker_gwbridge"]):
                n.remove()
    body = "\n".join(lines) + (
        "\n\nOne node (this machine), no routing mesh (no IPVS in this kernel): web tasks publish on"
        " engine-picked host ports and nginx routes to each task. Load: 2 threads of non-keep-alive GETs"
        " through nginx. A negative swap window means no request saw the old release after the first saw"
        " the new one; a positive one is the overlap while nginx's old workers drained.\n")
    print(body)
    write_section("bench/swarm.py", body)
    two_nodes_main()


if __name__ == "__main__":
    main()

"""Zero downtime: 20 consecutive redeploys (git push of a changed body) of one app under load, through
each proxy in turn (nginx, caddy, traefik), with keep-alive and non-keep-alive clients at the same time.

Prints per client kind: requests, failed requests, p50/p99 latency; and per redeploy: the push time and
the swap time (from "Starting web" to "Released" on the pusher's remote: lines: start beside the old
container, readiness, switch, drain, retire). Goal (issue 22): 0 failed requests for both client
kinds on every proxy; failures are reported as they are, with how many a retry on a new connection fixed
(what browsers and most HTTP libraries do for an idempotent GET whose reused connection was closed).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import publish
from tests.harness import Server, http_get, unique

REDEPLOYS = 20
PROXIES = ("nginx", "caddy", "traefik")
CLIENTS = 2  # threads per kind


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    retried_ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)


class Client(threading.Thread):
    """GET / in a loop; keep-alive clients reuse one connection until the server closes it."""

    def __init__(self, port: int, host: str, keepalive: bool, stats: Stats, lock: threading.Lock,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.host, self.keepalive = port, host, keepalive
        self.stats, self.lock, self.stop_event = stats, lock, stop

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Host": self.host} if self.keepalive else {"Host": self.host, "Connection": "close"}
        while not self.stop_event.is_set():
            t0 = time.perf_counter()
            reused = conn is not None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/", headers=headers)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                key, ok = (body, True) if resp.status == 200 else (f"HTTP {resp.status}", False)
                if not self.keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                key, ok = type(e).__name__, False
                if conn is not None:
                    conn.close()
                conn = None
            elapsed = time.perf_counter() - t0
            retry_ok = False
            if not ok and reused:  # what a browser does: the same GET once more, on a new connection
                try:
                    retry_ok = http_get(self.port, self.host, timeout=10)[0] == 200
                except OSError:
                    pass
            with self.lock:
                self.stats.latencies.append(elapsed)
                if ok:
                    self.stats.bodies[key] += 1
                else:
                    self.stats.failed += 1
                    self.stats.errors[key] += 1
                    self.stats.retried_ok += retry_ok


def push_timed(srv: Server, work: Path, app: str) -> tuple[float, float]:
    """(push seconds, swap seconds): the swap from the "Starting web" line to the "Released" line."""
    t0 = time.monotonic()
    p = subprocess.Popen(["git", "push", srv.remote(app), "main"], cwd=work, env=srv.git_env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    started = released = None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if "-----> Starting web" in line and started is None:
            started = time.monotonic()
        elif "-----> Released" in line:
            released = time.monotonic()
    assert p.wait(300) == 0, "".join(lines)
    assert started is not None and released is not None, "".join(lines)
    return time.monotonic() - t0, released - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@contextlib.contextmanager
def under_load(srv: Server, app: str) -> Iterator[dict[str, Stats]]:
    """CLIENTS threads of each kind GET the app through the proxy until the block ends: their stats by kind."""
    kinds = {"non-keep-alive": Stats(), "keep-alive": Stats()}
    lock, stop = threading.Lock(), threading.Event()
    clients = [Client(srv.proxy_port, f"{app}.localhost", kind == "keep-alive", stats, lock, stop)
               for kind, stats in kinds.items() for _ in range(CLIENTS)]
    for c in clients:
        c.start()
    try:
        yield kinds
    finally:
        stop.set()
        for c in clients:
            c.join(15)


def run_proxy(srv: Server, work: Path, app: str, redeploys: int, first: int) -> dict:
    """`redeploys` pushes under load through the selected proxy: per-kind stats, push and swap times."""
    with under_load(srv, app) as kinds:
        time.sleep(1)
        pushes, swaps = [], []
        for n in range(first, first + redeploys):
            srv.commit(work, f"deploy {n}", {"body.txt": f"deploy {n}\n"})
            push, swap = push_timed(srv, work, app)
            pushes.append(push)
            swaps.append(swap)
        time.sleep(1)
    final = http_get(srv.proxy_port, f"{app}.localhost")
    assert final == (200, f"deploy {first + redeploys - 1}"), final
    return {"kinds": kinds, "pushes": pushes, "swaps": swaps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redeploys", type=int, default=REDEPLOYS)
    parser.add_argument("--proxies", default=",".join(PROXIES))
    parser.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md is left as it is")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.add_key()
            app = unique("zdt")
            work = srv.app_repo(app, body="deploy 0")
            assert srv.push(work, app).returncode == 0
            first = 1
            for proxy in args.proxies.split(","):
                srv.cli("proxy:set", "--global", proxy)
                results[proxy] = run_proxy(srv, work, app, args.redeploys, first)
                first += args.redeploys
                print(proxy, {k: (len(s.latencies), s.failed, dict(s.errors)) for k, s in results[proxy]["kinds"].items()},
                      flush=True)
        finally:
            srv.stop()
    med = statistics.median
    lines = [
        f"{args.redeploys} consecutive redeploys (`git push`, Dockerfile app, web=1) under load on each proxy: "
        f"{CLIENTS} non-keep-alive and {CLIENTS} keep-alive client threads at once, GET / through the proxy.",
        "",
        "| proxy | client | requests | failed | failed, then OK on a retry | p50 latency | p99 latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for proxy, r in results.items():
        for kind, s in r["kinds"].items():
            lines.append(f"| {proxy} | {kind} | {len(s.latencies)} | {s.failed} | {s.retried_ok} | "
                         f"{pct(s.latencies, 0.5) * 1000:.1f} ms | {pct(s.latencies, 0.99) * 1000:.1f} ms |")
    lines += ["", "| proxy | per redeploy | median | min | max |", "|---|---|---|---|---|"]
    for proxy, r in results.items():
        pushes, swaps = r["pushes"], r["swaps"]
        lines += [
            f"| {proxy} | push (build + release + swap) | {med(pushes):.2f} s | {min(pushes):.2f} s | "
            f"{max(pushes):.2f} s |",
            f"| {proxy} | swap (start, check, switch, drain; retire follows the push) | {med(swaps):.2f} s | {min(swaps):.2f} s | "
            f"{max(swaps):.2f} s |",
        ]
    errors = [f"{proxy} {kind}: {dict(s.errors)}" for proxy, r in results.items() for kind, s in r["kinds"].items()
              if s.errors]
    publish("bench/zero_downtime.py", lines, errors=errors, write=not args.no_write, note=(
        "Goal (issue 22): 0 failed requests for both client kinds on every proxy. nginx and caddy are not "
        "reloaded by a redeploy: each app is routed to stable loopback addresses that a kernel DNAT rule sends to "
        "the current container (proxies/stable.py; nginx rotates its pooled upstream connections, caddy sends a "
        "switching app's requests past its pool until the old ones drained); traefik swaps its handlers "
        "in-process. The retry column is "
        "the same GET sent once more on a new connection (what browsers do)."))


if __name__ == "__main__":
    main()

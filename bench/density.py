"""Density (issue 22): deploy N tiny apps (FROM scratch + the host's static busybox, web=1) on one `pushdock serve`.

Measures: every app serving; the Nth push against the first (goal ≤ 1.2 times); the memory each app costs pushdock
(`serve` and the proxy) and the engine (dockerd, containerd, one shim and one docker-proxy per container, the
container itself: RSS and cgroup memory, before and after); a `serve` restart until every app answers through
the proxy (goal ≤ 10 s); `apps:list` and `ps:report` latency at N (host CLI); the full proxy rebuild
(`proxy:build-config --all`); `serve` RSS (goal ≤ 100 MB at 500). Everything is removed after (the harness's
Server.stop: proxies, containers, images).

Usage: .venv/bin/python bench/density.py [--apps 500] [--no-write]
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._floor import build_and_run_floor, tiny_repo
from bench._report import write_section
from bench.push_to_live import parse_stages
from tests.harness import ROOT, Server, http_get

REST = 35  # seconds: past serve's trim-memory interval (30 s), what a resting serve holds
ENGINE = ("dockerd", "containerd", "containerd-shim", "docker-proxy")  # comm: at most 15 characters


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(names: tuple[str, ...]) -> dict[str, int]:
    """Total RSS (KiB) of every process by name."""
    out = dict.fromkeys(names, 0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry.name}/comm").read_text().strip()
        except OSError:
            continue
        if name in out:
            out[name] += rss_kib(int(entry.name))
    return out


def container_memory(data: Path) -> int:
    """Sum of the memory of this data dir's containers' cgroups (bytes; cgroup v2 memory.current, else v1's
    memory.usage_in_bytes)."""
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=pushdock.data-dir={data.absolute()}"],
                         capture_output=True, text=True).stdout.split()
    total = 0
    for cid in ids:
        paths = (glob.glob(f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes")
                 or glob.glob(f"/sys/fs/cgroup/**/*{cid}*/memory.current", recursive=True))
        for path in paths[:1]:
            total += int(Path(path).read_text())
    return total


def proxy_rss(srv: Server) -> int:
    """RSS (KiB) of this data dir's nginx: its master (the pid file) and the master's children."""
    try:
        master = int((srv.data / "nginx" / "nginx.pid").read_text().strip())
    except (OSError, ValueError):
        return 0
    children = Path(f"/proc/{master}/task/{master}/children")
    pids = [master, *(int(p) for p in (children.read_text().split() if children.exists() else []))]
    return sum(rss_kib(p) for p in pids)


def zygote_rss(srv: Server) -> int:
    """RSS (KiB) of serve's warm-worker zygote (pushdock/zygote.py: a child of serve), 0 if none runs."""
    assert srv.proc is not None
    children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children")
    for pid in (children.read_text().split() if children.exists() else []):
        try:
            if b"pushdock.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return rss_kib(int(pid))
        except OSError:
            continue
    return 0


def timed(argv: list[str], env: dict[str, str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def paired_pushes(srv: Server, tmp: Path, pairs: int = 9) -> tuple[list[float], list[float], list[dict[str, float]],
                                                                 list[dict[str, float]]]:
    """A new app's push on the full server and on an empty one (its own serve), alternated: the machine's load
    at the moment weighs on both alike, so their ratio is what the N apps cost a push."""
    empty = Server(tmp / "empty").start()
    try:
        empty.add_key()
        full_times: list[float] = []
        empty_times: list[float] = []
        full_stages: list[dict[str, float]] = []
        empty_stages: list[dict[str, float]] = []
        token = secrets.token_hex(3)
        for i in range(pairs):
            order = [(srv, "full", full_times, full_stages), (empty, "empty", empty_times, empty_stages)]
            for server, tag, times, stages in order if i % 2 == 0 else order[::-1]:  # neither always first
                app = f"p{i:02d}"
                work = tiny_repo(server, app, f"{app} {tag} {token}")  # a body of its own: no layer cached by the other
                t0 = time.monotonic()
                res = server.push(work, app)
                times.append(time.monotonic() - t0)
                assert res.returncode == 0, res.stderr[-2000:]
                stages.append(parse_stages(res.stderr))
        return full_times, empty_times, full_stages, empty_stages
    finally:
        empty.stop()


def stage_pairs(full: list[dict[str, float]], empty: list[dict[str, float]]) -> str:
    names = [k for k in (full[0] if full else {}) if all(k in d for d in full + empty)]
    return ", ".join(f"{k} {statistics.median(d[k] for d in full):.2f} / {statistics.median(d[k] for d in empty):.2f} s"
                     for k in names)


def all_serving(srv: Server, apps: list[str]) -> int:
    return sum(1 for app in apps if http_get(srv.proxy_port, f"{app}.localhost", timeout=10) == (200, app))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    n = args.apps
    console = str(ROOT / ".venv" / "bin" / "pushdock")
    with tempfile.TemporaryDirectory(prefix="pushdock-density-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.add_key()
            assert srv.proc is not None
            time.sleep(REST)
            serve0 = rss_kib(srv.proc.pid)
            floor0 = build_and_run_floor(5)
            engine0 = processes(ENGINE)
            pushes: list[float] = []
            apps = [f"d{i:04d}" for i in range(n)]
            for i, app in enumerate(apps):
                work = tiny_repo(srv, app, app)
                t0 = time.monotonic()
                res = srv.push(work, app)
                pushes.append(time.monotonic() - t0)
                assert res.returncode == 0, res.stderr[-2000:]
                if (i + 1) % 50 == 0:
                    print(f"{i + 1} apps: last push {pushes[-1]:.2f} s, serve {rss_kib(srv.proc.pid) / 1024:.0f} MB",
                          flush=True)
            time.sleep(5)  # the last retire runs after its push
            serving = all_serving(srv, apps)
            serve_peak = rss_kib(srv.proc.pid)
            time.sleep(REST)  # serve hands free heap pages back on its timer
            serve1 = rss_kib(srv.proc.pid)
            zygote1 = zygote_rss(srv)
            nth, empty, nth_stages, empty_stages = paired_pushes(srv, Path(tmp))
            floor1 = build_and_run_floor(5)
            engine1 = processes(ENGINE)
            containers = container_memory(srv.data)
            nginx = proxy_rss(srv)
            list_s = timed([console, "apps:list"], srv.env)
            report_s = timed([console, "ps:report", apps[-1]], srv.env)
            t0 = time.monotonic()
            srv.cli("proxy:build-config", "--all", timeout=600)
            rebuild = time.monotonic() - t0
            srv.stop_serve()
            t0 = time.monotonic()
            srv.start(reconciled=False)
            while all_serving(srv, apps) < n and time.monotonic() - t0 < 300:
                time.sleep(0.2)
            restart = time.monotonic() - t0
            srv.wait_reconciled(600)
            time.sleep(REST)
            serve2 = rss_kib(srv.proc.pid)
        finally:
            srv.stop()
    first, last = pushes[0], pushes[-1]
    tail = statistics.median(pushes[-10:])
    engine_delta = {k: engine1[k] - engine0[k] for k in ENGINE}
    per_app_engine = (sum(engine_delta.values()) * 1024 + containers) / n
    lines = [
        f"{n} tiny apps (FROM scratch + busybox httpd, web=1) pushed one after the other to one `pushdock serve` "
        "(nginx, docker-local).",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| apps serving through the proxy | {serving} of {n} | all |",
        f"| a new app's push with {n} apps / with none (another serve, same moment; medians of "
        f"{len(nth)} alternated pairs) | {statistics.median(nth):.2f} s / {statistics.median(empty):.2f} s | "
        f"≤ 1.2×: {statistics.median(nth) / statistics.median(empty):.2f}× |",
        f"| … their stages (medians, with {n} apps / with none) | " + stage_pairs(nth_stages, empty_stages) + " | – |",
        f"| the engine alone: a cached `docker build` of the tiny app, with no app / with {n} (medians of 5) | "
        f"{statistics.median(floor0[0]):.2f} s / {statistics.median(floor1[0]):.2f} s | – |",
        f"| the engine alone: `docker run` until it answers, with no app / with {n} (medians of 5) | "
        f"{statistics.median(floor0[1]):.2f} s / {statistics.median(floor1[1]):.2f} s | – |",
        f"| first push / {n}th push (median of the last 10), machine load not paired | {first:.2f} s / "
        f"{last:.2f} s ({tail:.2f} s) | – |",
        f"| push, median of all | {statistics.median(pushes):.2f} s | – |",
        f"| `serve` RSS: no app at rest / {n} apps, right after the last push / {n} apps at rest ({REST} s later) / "
        f"at rest after a restart | {serve0 / 1024:.0f} / {serve_peak / 1024:.0f} / {serve1 / 1024:.0f} / "
        f"{serve2 / 1024:.0f} MB | ≤ 100 MB at 500 |",
        f"| the warm-worker zygote beside `serve` (pushdock/zygote.py), RSS at {n} apps | {zygote1 / 1024:.0f} MB "
        "(its pages are shared with the workers it forks) | – |",
        f"| pushdock per app: `serve` | {(serve1 - serve0) / n:.0f} KiB | – |",
        f"| nginx (master + workers) at {n} apps | {nginx / 1024:.0f} MB | – |",
        f"| engine per app (dockerd, containerd, shim, docker-proxy RSS + the container's cgroup memory) | "
        f"{per_app_engine / 1024 / 1024:.1f} MB | – |",
        f"| … of which: containers' cgroup memory, per app | {containers / n / 1024 / 1024:.2f} MB | – |",
        "| … engine processes' RSS growth, total | "
        + ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in engine_delta.items()) + " | – |",
        f"| `serve` restart until every app answers through the proxy | {restart:.2f} s | ≤ 10 s |",
        f"| `pushdock apps:list` at {n} apps (median of 5) | {list_s * 1000:.0f} ms | – |",
        f"| `pushdock ps:report APP` at {n} apps (median of 5) | {report_s * 1000:.0f} ms | – |",
        f"| full proxy rebuild (`proxy:build-config --all`) | {rebuild:.2f} s | – |",
    ]
    body = "\n".join(lines) + "\n\nRaw push times (s), every 10th: " + ", ".join(
        f"{t:.2f}" for t in pushes[::max(1, n // 10)]) + "\n"
    print(body)
    if not args.no_write:
        write_section("bench/density.py", body)


if __name__ == "__main__":
    main()

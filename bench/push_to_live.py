"""Push-to-live: median of warm pushes of a tiny FROM-scratch Dockerfile app, from `git push` starting to the new
body being served through the proxy, against its floor measured in the same run (bench/_floor.py: C git push
over OpenSSH, cached docker build, docker run until it answers, each alone). Also `apps:list` latency with 50
apps, on the host and over SSH. Both again with the SSH door's workers spawned per command instead of forked warm
(PUSHDOCK_WARM_WORKERS=0), a second server taking turns with the first. Goals: push-to-live ≤ 1.25 times its
floor (issue 22); apps:list < 150 ms."""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._floor import build_and_run_floor, git_push_floor, tiny_repo
from bench._report import write_section
from bench.builds import timed_push
from tests.harness import ROOT, Server, unique

PUSHES = 5


def push_to_live(servers: list[Server], pushes: int) -> list[tuple[list[float], list[dict[str, float]]]]:
    """Warm pushes of the tiny app on each server, taking turns (a push on each, then the next round), so a change
    of the machine's load weighs on every server alike: per server, seconds from `git push` to the new body served,
    and each push's stage times (the `Stage times:` line the deploy prints)."""
    token = secrets.token_hex(4)  # bodies never built before: no layer of an earlier run is reused
    apps, works = [], []
    for srv in servers:
        app = unique("bench")
        work = tiny_repo(srv, app, "cold")
        res = srv.push(work, app)
        assert res.returncode == 0, f"cold push failed: {res.stderr[-2000:]}"
        apps.append(app)
        works.append(work)
    results: list[tuple[list[float], list[dict[str, float]]]] = [([], []) for _ in servers]
    for i in range(pushes):
        for k, srv in enumerate(servers):
            body = f"warm push {i} {k} {token}"
            srv.commit(works[k], body, {"body.txt": body + "\n"})
            seconds, err = timed_push(srv, works[k], apps[k], body, output=True)
            results[k][0].append(seconds)
            results[k][1].append(parse_stages(err))
    return results


def parse_stages(output: str) -> dict[str, float]:
    line = next((ln for ln in output.splitlines() if "Stage times:" in ln), "")
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+) (\d+\.\d+) s", line.partition(":")[2])
            if m.group(1) != "total"}


def apps_list(servers: list[Server], n_apps: int = 50, runs: int = 10) -> tuple[list[float], list[list[float]]]:
    """`apps:list` with `n_apps` apps: on the host CLI (of the first server), and over SSH on each server in turn."""
    for srv in servers:
        for i in range(n_apps):
            srv.cli("apps:create", f"list-{i:02d}")
    console = ROOT / ".venv" / "bin" / "pushdock"
    host: list[float] = []
    ssh: list[list[float]] = [[] for _ in servers]
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([str(console), "apps:list"], env=servers[0].env, check=True, capture_output=True)
        host.append(time.monotonic() - t0)
        for k, srv in enumerate(servers):
            t0 = time.monotonic()
            srv.ssh("apps:list")
            ssh[k].append(time.monotonic() - t0)
    return host, ssh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=PUSHES)
    parser.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md is left as it is")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp) / "warm").start()
        cold_srv = Server(Path(tmp) / "spawned", PUSHDOCK_WARM_WORKERS="0")
        try:
            cold_srv.start()
            for s in (srv, cold_srv):
                s.add_key()
            (live, stages), (cold_live, _) = push_to_live([srv, cold_srv], args.pushes)
            git_push = git_push_floor(srv, args.pushes)
            build, run = build_and_run_floor(args.pushes)
            host, (ssh, cold_ssh) = apps_list([srv, cold_srv])
        finally:
            cold_srv.stop()
            srv.stop()
    med = statistics.median
    floor = med(git_push) + med(build) + med(run)
    ratio = med(live) / floor
    names = list(dict.fromkeys(k for s in stages for k in s))
    stage_cells = ", ".join(f"{k} {med([s.get(k, 0.0) for s in stages]):.2f} s" for k in names)
    lines = [
        "| measure | median | min | max | goal |",
        "|---|---|---|---|---|",
        f"| push-to-live, warm ({len(live)} pushes) | {med(live):.2f} s | {min(live):.2f} s | {max(live):.2f} s | "
        f"≤ 1.25 × floor |",
        f"| floor: C git push over OpenSSH (C receive-pack) | {med(git_push):.2f} s | {min(git_push):.2f} s | "
        f"{max(git_push):.2f} s | – |",
        f"| floor: cached `docker build` | {med(build):.2f} s | {min(build):.2f} s | {max(build):.2f} s | – |",
        f"| floor: `docker run` until it answers | {med(run):.2f} s | {min(run):.2f} s | {max(run):.2f} s | – |",
        f"| floor (sum of the three medians) | {floor:.2f} s | | | |",
        f"| **push-to-live / floor** | **{ratio:.2f}×** | | | ≤ 1.25× |",
        f"| `pushdock apps:list`, 50 apps, host | {med(host)*1000:.0f} ms | {min(host)*1000:.0f} ms "
        f"| {max(host)*1000:.0f} ms | < 150 ms |",
        f"| `ssh … apps:list`, 50 apps | {med(ssh)*1000:.0f} ms | {min(ssh)*1000:.0f} ms | {max(ssh)*1000:.0f} ms | – |",
        f"| spawned workers (`PUSHDOCK_WARM_WORKERS=0`): push-to-live | {med(cold_live):.2f} s | "
        f"{min(cold_live):.2f} s | {max(cold_live):.2f} s | – |",
        f"| spawned workers: push-to-live / floor | {med(cold_live) / floor:.2f}× | | | – |",
        f"| spawned workers: `ssh … apps:list`, 50 apps | {med(cold_ssh)*1000:.0f} ms | {min(cold_ssh)*1000:.0f} ms "
        f"| {max(cold_ssh)*1000:.0f} ms | – |",
    ]
    body = "\n".join(lines) + (
        "\n\nPush-to-live is measured from starting `git push` until a fresh (non-keep-alive) GET through nginx"
        " returns the new body; each push changes `body.txt` of a FROM-scratch app serving it with the host's static"
        " busybox (bench/_floor.py), so the build is two cached layers and one new one. The floor is measured in"
        " the same run, each part alone: C git pushing the same kind of commit over OpenSSH to C git-receive-pack"
        " behind a private sshd, a cached `docker build` of the same context, and `docker run` of the image until"
        " it answers HTTP.\n"
        f"\nStage times of the pushes (medians, from each deploy's `Stage times:` line): {stage_cells}. Retiring"
        " the old container runs after the pusher has its answer (its time ends the deploy log).\n"
        "\nThe SSH door's workers are forked from serve's zygote (docs/architecture.md, \"The SSH door and warm"
        " workers\"); the `spawned workers` rows are a second server in the same run that starts a Python process"
        " per command as before (`PUSHDOCK_WARM_WORKERS=0`); the two take turns, push by push and `apps:list` by"
        " `apps:list`, so a change of the machine's load weighs on both alike.\n"
        f"\nRaw push times (s): {', '.join(f'{t:.2f}' for t in live)}; spawned: "
        f"{', '.join(f'{t:.2f}' for t in cold_live)}\n")
    print(body)
    if not args.no_write:
        write_section("bench/push_to_live.py", body)


if __name__ == "__main__":
    main()

"""Push-to-live: median of warm pushes of a tiny FROM-scratch Dockerfile app, from `git push` starting to the new
body being served through the proxy, against its floor measured in the same run (bench/_floor.py: C git push
over OpenSSH, cached docker build, docker run until it answers, each alone). Also `apps:list` latency with 50
apps, on the host and over SSH. Goals: push-to-live ≤ 1.25 times its floor (issue 22); apps:list < 150 ms."""

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


def push_to_live(srv: Server, pushes: int) -> tuple[list[float], list[dict[str, float]]]:
    """Warm pushes of the tiny app: seconds from `git push` to the new body served, and each push's stage times
    (the `Stage times:` line the deploy prints)."""
    app = unique("bench")
    work = tiny_repo(srv, app, "cold")
    cold = srv.push(work, app)
    assert cold.returncode == 0, f"cold push failed: {cold.stderr[-2000:]}"
    times, stages = [], []
    token = secrets.token_hex(4)  # bodies never built before: no layer of an earlier run is reused
    for i in range(pushes):
        body = f"warm push {i} {token}"
        srv.commit(work, body, {"body.txt": body + "\n"})
        seconds, err = timed_push(srv, work, app, body, output=True)
        times.append(seconds)
        stages.append(parse_stages(err))
    return times, stages


def parse_stages(output: str) -> dict[str, float]:
    line = next((ln for ln in output.splitlines() if "Stage times:" in ln), "")
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+) (\d+\.\d+) s", line.partition(":")[2])
            if m.group(1) != "total"}


def apps_list(srv: Server, n_apps: int = 50, runs: int = 10) -> tuple[list[float], list[float]]:
    for i in range(n_apps):
        srv.cli("apps:create", f"list-{i:02d}")
    console = ROOT / ".venv" / "bin" / "pushdock"
    host, ssh = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([str(console), "apps:list"], env=srv.env, check=True, capture_output=True)
        host.append(time.monotonic() - t0)
        t0 = time.monotonic()
        srv.ssh("apps:list")
        ssh.append(time.monotonic() - t0)
    return host, ssh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=PUSHES)
    parser.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md is left as it is")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.add_key()
            live, stages = push_to_live(srv, args.pushes)
            git_push = git_push_floor(srv, args.pushes)
            build, run = build_and_run_floor(args.pushes)
            host, ssh = apps_list(srv)
        finally:
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
        f"\nRaw push times (s): {', '.join(f'{t:.2f}' for t in live)}\n")
    print(body)
    if not args.no_write:
        write_section("bench/push_to_live.py", body)


if __name__ == "__main__":
    main()

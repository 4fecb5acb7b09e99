"""Push-to-live: median of 5 warm pushes of a tiny Dockerfile app, from `git push` starting to the new body
being served through the proxy. Also `apps:list` latency with 50 apps, on the host and over SSH.
Targets (issue 2): push-to-live < 3 s warm; apps:list < 150 ms on the host."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import write_section
from bench.builds import timed_push
from tests.harness import ROOT, Server, unique


def push_to_live(srv: Server, pushes: int = 5) -> list[float]:
    app = unique("bench")
    work = srv.app_repo(app)
    assert srv.push(work, app).returncode == 0, "cold push failed"
    times = []
    for i in range(pushes):
        body = f"warm push {i}"
        srv.commit(work, body, {"body.txt": body + "\n"})
        times.append(timed_push(srv, work, app, body))
    return times


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
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.add_key()
            live = push_to_live(srv)
            host, ssh = apps_list(srv)
        finally:
            srv.stop()
    med = statistics.median
    lines = [
        "| measure | median | min | max | target |",
        "|---|---|---|---|---|",
        f"| push-to-live, warm (5 pushes) | {med(live):.2f} s | {min(live):.2f} s | {max(live):.2f} s | < 3 s |",
        f"| `pushdock apps:list`, 50 apps, host | {med(host)*1000:.0f} ms | {min(host)*1000:.0f} ms "
        f"| {max(host)*1000:.0f} ms | < 150 ms |",
        f"| `ssh … apps:list`, 50 apps | {med(ssh)*1000:.0f} ms | {min(ssh)*1000:.0f} ms | {max(ssh)*1000:.0f} ms | – |",
    ]
    body = "\n".join(lines) + (
        "\n\nPush-to-live is measured from starting `git push` until a fresh (non-keep-alive) GET through nginx"
        " returns the new body; each push changes `body.txt` of tests/apps/e2e-web (a Dockerfile app FROM the"
        " local stack image), so the Docker layer cache makes the build itself short.\n"
        f"\nRaw push times (s): {', '.join(f'{t:.2f}' for t in live)}\n")
    print(body)
    write_section("bench/push_to_live.py", body)


if __name__ == "__main__":
    main()

"""Builds: cold and warm push-to-live for the python and nodejs buildpacks and the Dockerfile path, image sizes, and
the stack image's build time and size. Target (issue 3): warm python redeploy under 5 s push-to-live.

Push-to-live: from starting `git push` until a fresh GET through nginx returns the new body. Cold: the first push
of a new app (empty build cache). Warm: later pushes that change only body.txt. The stack is built under a scratch
tag (removed afterwards) so pushdock/stack:bookworm is untouched; `--no-stack` skips that part.
"""

from __future__ import annotations

import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from bench._report import write_section
from tests.harness import Server, http_get, unique

CASES = (  # (label, sample app in tests/apps)
    ("python buildpack (Flask + gunicorn, uv)", "buildpack-flask"),
    ("nodejs buildpack (express, npm ci)", "buildpack-express"),
    ("Dockerfile (FROM the stack)", "e2e-web"),
)
WARM_PUSHES = 3


def timed_push(srv: Server, work: Path, app: str, body: str, *, output: bool = False) -> Any:
    """Seconds from `git push` starting to `body` being served (with `output`: and the push's stderr)."""
    seen = threading.Event()
    t0 = time.monotonic()
    proc = subprocess.Popen(["git", "push", srv.remote(app), "main"], cwd=work, env=srv.git_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def poll() -> None:
        while not seen.is_set() and time.monotonic() - t0 < 300:
            try:
                if http_get(srv.proxy_port, f"{app}.localhost", timeout=2)[1] == body:
                    seen.set()
                    return
            except OSError:
                pass
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    poller.join()
    elapsed = time.monotonic() - t0
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and seen.is_set(), err
    return (elapsed, err) if output else elapsed


def bench_case(srv: Server, sample: str) -> dict[str, object]:
    app = unique("bench")
    work = srv.app_repo(app, sample, body="cold push")
    cold = timed_push(srv, work, app, "cold push")
    warm = []
    for i in range(WARM_PUSHES):
        body = f"warm push {i}"
        srv.commit(work, body, {"body.txt": body + "\n"})
        warm.append(timed_push(srv, work, app, body))
    changed = None
    if sample == "buildpack-flask":
        body = "requirements changed"
        reqs = (work / "requirements.txt").read_text() + "requests==2.*\n"
        srv.commit(work, body, {"body.txt": body + "\n", "requirements.txt": reqs})
        changed = timed_push(srv, work, app, body)
    images = docker.from_env().images.list(name=f"pushdock/{app}")
    size = max(img.attrs["Size"] for img in images)
    return {"cold": cold, "warm": warm, "changed": changed, "size": size}


def bench_stack() -> tuple[float, int]:
    """Build the stack under a scratch tag with the CLI (as `make run` does), then remove it."""
    tag = f"pushdock-bench/stack:{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-stack-") as tmp:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PUSHDOCK_DATA_DIR": tmp,
               "PUSHDOCK_STACK_IMAGE": tag, "HOME": tmp}
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "pushdock.cli", "stack:build", "--force"], env=env, check=True,
                       capture_output=True, cwd=Path(__file__).resolve().parents[1])
        seconds = time.monotonic() - t0
    client = docker.from_env()
    size = int(client.images.get(tag).attrs["Size"])
    client.images.remove(tag)
    return seconds, size


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.add_key()
            for label, sample in CASES:
                results[label] = bench_case(srv, sample)
                print(label, results[label], flush=True)
        finally:
            srv.stop()
    stack = None if "--no-stack" in sys.argv else bench_stack()

    med = statistics.median
    stack_size = int(docker.from_env().images.get("pushdock/stack:bookworm").attrs["Size"])
    lines = ["| build path | cold push-to-live | warm push-to-live (median, min–max of 3) | image size (over the stack) "
             "| target |", "|---|---|---|---|---|"]
    for label, r in results.items():
        warm = r["warm"]
        target = "warm < 5 s" if label.startswith("python") else "–"
        lines.append(f"| {label} | {r['cold']:.2f} s | {med(warm):.2f} s ({min(warm):.2f}–{max(warm):.2f}) "
                     f"| {r['size'] / 1e6:.0f} MB (+{(r['size'] - stack_size) / 1e6:.1f} MB) | {target} |")
    flask = results[CASES[0][0]]
    body = "\n".join(lines) + "\n"
    if flask["changed"] is not None:
        body += f"\nPython, requirements.txt changed (adds `requests`), warm cache: {flask['changed']:.2f} s.\n"
    if stack is not None:
        body += (f"\nStack image (`stack:build`: debootstrap + nodejs, npm 10, uv; imported): "
                 f"{stack[0]:.0f} s, {stack[1] / 1e6:.0f} MB.\n")
    body += ("\nPush-to-live runs from starting `git push` until a fresh GET through nginx returns the new body. "
             "Cold is the first push of a new app (empty build cache, so PyPI and npm downloads included); warm "
             "pushes change only `body.txt`. Buildpack builds compile in a container of the stack image and commit "
             "it; the Dockerfile path uses the engine's classic builder and its layer cache.\n")
    print(body)
    write_section("bench/builds.py", body)


if __name__ == "__main__":
    main()

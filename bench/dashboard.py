"""Dashboard and API latency with 200 apps (issue 18), and what the FastAPI door costs `serve` at start-up.

The apps are made in the state without deploying (each with two release records, v2 current: what the overview
reads), so no Docker is involved: the overview page reads only the state, and `/api/v1/apps` runs `apps:list` in
a worker process whatever the apps run, so this is representative of both; an app's page adds four commands
(releases, ps:report, domains, certs) whose ps:report asks the engine, measured here with no containers.
Requests go over real HTTP to the door (uvicorn) in this process, one at a time, each on a new connection.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import write_section
from pushdock import tokens, zygote
from pushdock.context import Context
from pushdock.settings import Settings, as_env
from pushdock.state import Identity, Release

APPS = 200
RUNS = 30


def request(port: int, method: str, path: str, headers: dict[str, str], body: str | None = None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return resp.status, text, resp.getheader("Set-Cookie") or ""


def timed(port: int, path: str, headers: dict[str, str], runs: int = RUNS) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        status, _, _ = request(port, "GET", path, headers)
        out.append(time.perf_counter() - t0)
        assert status == 200, (path, status)
    return out


def populate(ctx: Context) -> None:
    for i in range(APPS):
        app = f"app-{i:03d}"
        ctx.state.create_app(app)
        for n in (1, 2):
            r = Release(app=app, number=n, image=f"pushdock/{app}:v{n}", env={"K": "v"}, processes={"web": "x"},
                        formation={"web": 1}, sha="a" * 40, who="bench", why="git push")
            ctx.state.save_release(r)
            ctx.state.promote_release(r)


def sign_in(port: int, secret: str) -> str:
    _, page, _ = request(port, "GET", "/signin", {})
    nonce = re.search(r'name="csrf" value="([^"]+)"', page)[1]
    status, _, set_cookie = request(port, "POST", "/signin", {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"pushdock_signin={nonce}"},
        f"token={secret}&csrf={nonce}")
    assert status == 303, status
    return re.search(r"pushdock_session=([^;]+)", set_cookie)[1]


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[max(0, int(len(values) * 0.95) - 1)]
    return f"{statistics.median(values) * 1000:.0f} ms | {p95 * 1000:.0f} ms"


def import_cost() -> tuple[float, int]:
    """Seconds and resident memory (KiB, VmRSS) that importing the web door adds to a fresh interpreter holding the core."""
    from pushdock.proc import run

    code = ("import time; import pushdock.context, pushdock.settings, pushdock.state, pydantic\n"
            "rss = lambda: int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
            "r0, t = rss(), time.perf_counter()\n"
            "import web.door, web.app, web.api, web.dashboard\n"
            "print(time.perf_counter() - t, rss() - r0)")
    out = run([sys.executable, "-c", code]).stdout.split()
    return float(out[0]), int(out[1])


def cli_baseline(data: Path, runs: int = 10) -> list[float]:
    """The host CLI's `pushdock apps:list --format json` on the same data dir: what one worker process costs."""
    from pushdock.proc import run

    env = {**os.environ, "PUSHDOCK_DATA_DIR": str(data)}
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run([str(Path(sys.executable).with_name("pushdock")), "apps:list", "--format", "json"], env=env)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    from loguru import logger

    from web.door import HttpDoor

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    data = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    ctx = Context(settings=Settings(data_dir=data, http_host="127.0.0.1", http_port=0),
                  identity=Identity(name="bench", role="admin", door="cli"))
    populate(ctx)
    _, secret = tokens.add_token(ctx, "bench")
    door = HttpDoor(ctx)
    door.start()
    try:
        port = door.address[1]
        session = {"Cookie": f"pushdock_session={sign_in(port, secret)}"}
        bearer = {"Authorization": f"Bearer {secret}"}
        assert len(json.loads(request(port, "GET", "/api/v1/apps", bearer)[1])) == APPS
        timed(port, "/", session, 3)  # warm-up
        rows = [
            ("`GET /healthz`", timed(port, "/healthz", {})),
            (f"dashboard `GET /` ({APPS} apps)", timed(port, "/", session)),
            (f"`GET /api/v1/apps` ({APPS} apps), spawned worker", timed(port, "/api/v1/apps", bearer)),
            ("dashboard `GET /apps/APP` (4 commands), spawned workers", timed(port, "/apps/app-100", session, 5)),
            ("`GET /api/v1/apps/APP/releases`, spawned worker", timed(port, "/api/v1/apps/app-100/releases", bearer)),
        ]
        warm = zygote.Zygote.start(door.worker_modules, {**os.environ, **as_env(ctx.settings)})
        zygote.install(warm)
        try:
            timed(port, "/api/v1/apps", bearer, 2)  # the zygote's start-up: what serve pays once
            rows += [
                (f"`GET /api/v1/apps` ({APPS} apps), warm worker", timed(port, "/api/v1/apps", bearer)),
                ("dashboard `GET /apps/APP` (4 commands), warm workers", timed(port, "/apps/app-100", session, 10)),
                ("`GET /api/v1/apps/APP/releases`, warm worker",
                 timed(port, "/api/v1/apps/app-100/releases", bearer)),
            ]
        finally:
            zygote.install(None)
            warm.stop()
        rows.append(("host CLI `pushdock apps:list --format json` (for comparison)", cli_baseline(data)))
    finally:
        door.stop()
    seconds, rss = import_cost()
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    table = "\n".join(f"| {label} | {ms(v)} | {len(v)} |" for label, v in rows)
    body = f"""| request | median | p95 | runs |
|---|---|---|---|
{table}

Load average at the end of the run: {load} (2 cores shared with other engineers' test suites: absolute figures are
inflated; compare rows with each other). Each API call runs in one worker process. Spawned (`PUSHDOCK_WARM_WORKERS=0`),
it costs about what the host CLI's `apps:list` costs on its own (last row): a Python start-up and its imports; warm,
it is forked from the zygote `serve` starts (pushdock/zygote.py, docs/architecture.md), which has them done. The
overview page reads the state in the door's process and stays fast with 200 apps.

Importing the web door (FastAPI, uvicorn, a2wsgi, Jinja2, API and dashboard) into an interpreter that holds the
core: {seconds * 1000:.0f} ms and {rss / 1024:.1f} MiB more resident memory; `pushdock serve` pays this once at start-up (commands
never import it).

{__doc__.split(chr(10) + chr(10), 1)[1].strip()}
"""
    print(body)
    write_section("bench/dashboard.py", body)


if __name__ == "__main__":
    main()

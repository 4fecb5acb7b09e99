"""What caddy's pooled and unpooled upstream connections cost (issue 22): requests/s and latency through
caddy, for
  - direct, pooled: stable addresses off, caddy's default transport (a redeploy is an admin-API reload);
  - steered, pooled: the stable address, what caddy uses between switches;
  - steered, not pooled: what caddy uses during a switch (the file `switching/APP`: a new upstream connection
    per request, which the DNAT rule sends to the current upstream).
The upstream is a second caddy answering a fixed body (a Go server: the proxy's cost, not a slow backend's);
the clients are processes with one keep-alive connection each, GET / in a loop for a fixed time. Also counted:
sockets left in TIME_WAIT on each side (ephemeral ports: the upstream closes first, so most sit on the
upstream's side; loopback ones are reused after 1 s, net.ipv4.tcp_tw_reuse=2).

Usage: .venv/bin/python bench/upstream_pooling.py [--seconds 10] [--clients 4] [--no-write]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger

from bench._report import write_section
from proxies import stable
from proxies.caddy.proxy import CaddyProxy, _Layout, caddy_binary
from pushdock.context import Context
from pushdock.routing import Upstream
from pushdock.settings import Settings
from tests.harness import free_port

HOST = "web.bench.test"


def upstream_caddy(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    doc = {"admin": {"disabled": True}, "logging": {"logs": {"default": {"level": "ERROR"}}},
           "apps": {"http": {"servers": {"up": {"listen": [f"127.0.0.1:{port}"], "automatic_https": {"disable": True},
                                                 "routes": [{"handle": [{"handler": "static_response",
                                                                         "body": "A"}]}]}}}}}
    conf = root / "upstream.json"
    conf.write_text(json.dumps(doc))
    child = subprocess.Popen([caddy_binary(), "run", "--config", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={"HOME": str(root), "PATH": os.environ["PATH"]})
    for _ in range(200):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            return child, port
        except OSError:
            time.sleep(0.05)
    child.kill()
    raise SystemExit("the upstream caddy did not start")


def client(port: int, seconds: float, out: Any) -> None:
    lat: list[float] = []
    failed = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/", headers={"Host": HOST})
            resp = conn.getresponse()
            ok = resp.read() == b"A" and resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        lat.append(time.perf_counter() - t0)
        failed += not ok
    out.put((lat, failed))


def time_wait(up: int, address: str) -> tuple[int, int]:
    """Sockets in TIME_WAIT on the upstream's side (it closed first) and on caddy's (to the upstream or to the
    stable address: the ones that hold an ephemeral port)."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait"], capture_output=True, text=True).stdout
    pairs = [line.split()[2:4] for line in out.splitlines()]
    upstream = sum(1 for local, _ in pairs if local == f"127.0.0.1:{up}")
    caddy = sum(1 for _, peer in pairs if peer == f"127.0.0.1:{up}" or peer.startswith(f"{address}:"))
    return upstream, caddy


def measure(variant: str, up: int, seconds: float, clients: int) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    settings = Settings(data_dir=data, proxy_port=free_port(), proxy_tls_port=free_port(),
                        stable_upstreams=variant != "direct, pooled")
    ctx = Context(settings=settings)
    px = CaddyProxy()
    try:
        px.apply(ctx, "web", [HOST], [Upstream("127.0.0.1", up)])
        if variant == "steered, not pooled":
            (_Layout(px.root(ctx)).switching / "web").touch()  # as during a switch
        address = stable.Stable(px.root(ctx)).address
        tw0 = time_wait(up, address)
        queue: Any = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=client, args=(settings.proxy_port, seconds, queue))
                 for _ in range(clients)]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        tw1 = time_wait(up, address)
    finally:
        px.stop(ctx)
        shutil.rmtree(data, ignore_errors=True)
    lat = sorted(x for lats, _ in results for x in lats)
    return {"variant": variant, "requests": len(lat), "rps": len(lat) / seconds,
            "failed": sum(f for _, f in results), "p50": statistics.median(lat),
            "p99": lat[int(len(lat) * 0.99)],
            "tw_upstream": max(0, tw1[0] - tw0[0]), "tw_caddy": max(0, tw1[1] - tw0[1])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    root = Path(tempfile.mkdtemp(prefix="bench-pool-up-"))
    child, up = upstream_caddy(root)
    rows = []
    try:
        for variant in ("direct, pooled", "steered, pooled", "steered, not pooled"):
            r = measure(variant, up, args.seconds, args.clients)
            rows.append(r)
            print(f"{variant:20} {r['requests']:7} requests, {r['rps']:6.0f}/s, p50 {r['p50'] * 1000:.2f} ms, "
                  f"p99 {r['p99'] * 1000:.2f} ms, failed {r['failed']}, TIME_WAIT added: upstream's side "
                  f"{r['tw_upstream']}, caddy's {r['tw_caddy']}",
                  flush=True)
    finally:
        child.terminate()
        child.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    table = ["| caddy → upstream | requests | requests/s | p50 | p99 | failed "
             "| TIME_WAIT added: upstream's side / caddy's side |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['variant']} | {r['requests']} | {r['rps']:.0f} | {r['p50'] * 1000:.2f} ms | "
              f"{r['p99'] * 1000:.2f} ms | {r['failed']} | {r['tw_upstream']} / {r['tw_caddy']} |" for r in rows]
    body = ((__doc__ or "").split("Usage:")[0].strip() + "\n\n"
            + f"{args.clients} client processes, {args.seconds:g} s per variant.\n\n" + "\n".join(table) + "\n")
    if not args.no_write:
        write_section("bench/upstream_pooling.py", body)


if __name__ == "__main__":
    main()

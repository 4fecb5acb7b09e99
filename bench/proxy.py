"""Proxy benchmark (issues 5, 22): per-change latency and full rebuild with 1, 100 and 1000 apps, for nginx,
caddy and traefik; failed requests of keep-alive clients while another app changes.

Each proxy runs for real (private instance, temp data dir, free ports) and routes to in-process HTTP
backends. "One change" = `apply` of one app's new upstream with N apps routed: the call returns once the
new route is live and the old upstream drained (nginx: old workers exited). Then the same `apply` in a fresh
process, where nothing of the route tables is cached yet, two ways: "in a new interpreter" (its imports done
before the clock starts: only what `apply` imports lazily is timed), and "in a worker forked warm" as a push's
is (a process imports what serve's zygote imports, `gc.freeze()`s as it does and forks; in the child what `apply`
imports lazily and its copy-on-write faults count; the fork and the worker's Settings, ~4 ms, are paid once per
push, not per change, and are not timed). "Full rebuild" = every app's
route changed in one batch (`proxy:build-config --all`, `proxy:set --global`). Keep-alive load: 8 clients
with persistent connections on one app while 10 changes of another app are applied; a failure is any
request without a 2xx answer (mostly a keep-alive connection the proxy closed at reload).
Goals (issue 22): one app's route change at 1000 apps ≤ 20 ms with caddy, ≤ 150 ms with nginx, traefik measured.

Usage: .venv/bin/python bench/proxy.py [--apps 1,100,1000] [--proxies nginx,caddy,traefik] [--no-write]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger

from bench._report import write_section
from gitserver import worker
from proxies.caddy.proxy import CaddyProxy
from proxies.nginx.proxy import NginxProxy
from proxies.traefik.proxy import TraefikProxy
from pushdock import proc, zygote
from pushdock.context import Context
from pushdock.routing import Upstream
from pushdock.settings import Settings, as_env
from tests.harness import free_port

PROXIES = {"nginx": NginxProxy, "caddy": CaddyProxy, "traefik": TraefikProxy}
CHANGES = 10
FRESH = 5


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        data = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def backends(n: int) -> list[Upstream]:
    out = []
    for i in range(n):
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.body = f"b{i}".encode()  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        out.append(Upstream("127.0.0.1", srv.server_address[1]))
    return out


def keepalive_load(port: int, host: str, stop: threading.Event, result: Counter[str]) -> None:
    conn: http.client.HTTPConnection | None = None
    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            result["ok" if resp.status < 300 else f"HTTP {resp.status}"] += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            result[type(e).__name__] += 1
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def run(kind: str, n: int, ups: list[Upstream]) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    ctx = Context(settings=Settings(data_dir=data, proxy_port=free_port(), proxy_tls_port=free_port()))
    px = PROXIES[kind]()
    apps = [f"app{i}" for i in range(n)]
    try:
        t0 = time.monotonic()
        with px.batch(ctx):
            for i, app in enumerate(apps):
                px.apply(ctx, app, [f"{app}.bench.test"], [ups[i % len(ups)]])
        first = time.monotonic() - t0
        t0 = time.monotonic()
        with px.batch(ctx):
            for i, app in enumerate(apps):
                px.apply(ctx, app, [f"{app}.bench.test"], [ups[(i + 1) % len(ups)]])
        rebuild = time.monotonic() - t0
        changes = []
        target = apps[-1]
        for k in range(CHANGES):
            t0 = time.monotonic()
            px.apply(ctx, target, [f"{target}.bench.test"], [ups[k % len(ups)]])
            changes.append(time.monotonic() - t0)
        fresh: dict[str, list[float]] = {"cold": [], "warm": []}
        for k in range(FRESH):
            for i, mode in enumerate(("cold", "warm")):  # alternated: both see the same machine; each a real change
                fresh[mode].append(_fresh_change(kind, ctx.settings, target, ups[(2 * k + i) % len(ups)], mode))
        domain_changes = []  # a change the proxy itself must take (nginx: a reload; caddy: an admin-API call)
        for k in range(CHANGES):
            names = [f"{target}.bench.test"] + ([f"www{k}.{target}.bench.test"] if k % 2 == 0 else [])
            t0 = time.monotonic()
            px.apply(ctx, target, names, [ups[(CHANGES - 1) % len(ups)]])
            domain_changes.append(time.monotonic() - t0)
        # keep-alive clients on apps[0] while another app changes (every reload touches every client)
        stop, result = threading.Event(), Counter[str]()
        clients = [threading.Thread(target=keepalive_load, args=(ctx.settings.proxy_port, "app0.bench.test",
                                                                  stop, result)) for _ in range(8)]
        for c in clients:
            c.start()
        time.sleep(0.5)
        for k in range(CHANGES):
            px.apply(ctx, target, [f"{target}.bench.test"], [ups[(k + 1) % len(ups)]])
            time.sleep(0.2)
        stop.set()
        for c in clients:
            c.join()
        requests = sum(result.values())
        failed = requests - result["ok"]
        return {"proxy": kind, "apps": n, "first": first, "rebuild": rebuild,
                "median": statistics.median(changes), "max": max(changes), "requests": requests,
                "fresh": statistics.median(fresh["cold"]), "forked": statistics.median(fresh["warm"]),
                "domain_median": statistics.median(domain_changes), "domain_max": max(domain_changes),
                "failed": failed, "per_reload": failed / CHANGES,
                "kinds": ", ".join(f"{k} {v}" for k, v in sorted(result.items()) if k != "ok") or "-"}
    finally:
        px.stop(ctx)


def _fresh_change(kind: str, settings: Settings, app: str, upstream: Upstream, mode: str) -> float:
    """One upstream change of `app`, timed inside a new process: `cold` a new interpreter (imports done before the
    clock starts; what `apply` imports lazily is timed), `warm` a child forked from a process warmed as serve's
    zygote warms (pushdock/zygote.py: the same modules imported, then gc.freeze) — what a push's worker is."""
    env = {**os.environ, **as_env(settings)}
    res = proc.run([sys.executable, __file__, "--fresh-change",
                    json.dumps([kind, app, upstream.host, upstream.port, mode])], env=env, timeout=120)
    return float(res.stdout.strip().splitlines()[-1])


def _one_fresh_change(arg: str) -> None:
    kind, app, host, port, mode = json.loads(arg)
    if mode == "cold":
        print(_timed_apply(kind, app, host, int(port)))
        return
    zygote.warm([worker.__name__])  # as serve's zygote: the SSH door's worker module, the plugins' WARM names
    gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker (its copy-on-write faults during apply count)
        os.close(read)
        os.write(write, str(_timed_apply(kind, app, host, int(port))).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        took = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not took:
        raise SystemExit(f"error: the forked change failed (status {status})")
    print(took)


def _timed_apply(kind: str, app: str, host: str, port: int) -> float:
    px = PROXIES[kind]()
    ctx = Context(settings=Settings())
    t0 = time.monotonic()
    px.apply(ctx, app, [f"{app}.bench.test"], [Upstream(host, port)])
    return time.monotonic() - t0


def main() -> None:
    if sys.argv[1:2] == ["--fresh-change"]:
        logger.remove()
        _one_fresh_change(sys.argv[2])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", default="1,100,1000")
    parser.add_argument("--proxies", default="nginx,caddy,traefik")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    ups = backends(4)
    rows = []
    for kind in args.proxies.split(","):
        for n in (int(x) for x in args.apps.split(",")):
            r = run(kind, n, ups)
            rows.append(r)
            print(f"{kind:6} {n:5} apps: first start {r['first'] * 1000:7.0f} ms, full rebuild "
                  f"{r['rebuild'] * 1000:7.0f} ms, one change median {r['median'] * 1000:6.1f} / max "
                  f"{r['max'] * 1000:6.1f} ms, in a new interpreter {r['fresh'] * 1000:6.1f} ms, in a warm-forked worker {r['forked'] * 1000:6.1f} ms, domain change median {r['domain_median'] * 1000:6.1f} / max "
                  f"{r['domain_max'] * 1000:6.1f} ms; keep-alive: {r['requests']} requests, {r['failed']} failed "
                  f"({r['per_reload']:.1f}/reload: {r['kinds']})", flush=True)
    table = ["| proxy | apps | first start (all apps, one batch) | full rebuild (every route changed, one batch) "
             "| one app's upstream change: median / max | the same in a new interpreter (median) | in a worker forked warm, as a push's (median) | one app's domain change: median / max "
             "| keep-alive requests | failed | failed per change | kinds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['proxy']} | {r['apps']} | {r['first'] * 1000:.0f} ms | {r['rebuild'] * 1000:.0f} ms | "
                     f"{r['median'] * 1000:.1f} / {r['max'] * 1000:.1f} ms | {r['fresh'] * 1000:.1f} ms | {r['forked'] * 1000:.1f} ms | "
                     f"{r['domain_median'] * 1000:.1f} / {r['domain_max'] * 1000:.1f} ms | {r['requests']} | {r['failed']} | "
                     f"{r['per_reload']:.1f} | {r['kinds']} |")
    body = (__doc__ or "").split("Usage:")[0].strip() + "\n\n" + "\n".join(table) + "\n\n" + (
        "A change returns when the route is live and the old upstream drained. An upstream change (what every "
        "redeploy is) does not touch nginx or caddy: the app is routed to stable loopback addresses and the "
        "change replaces the app's elements of this data dir's nftables DNAT map in one netlink transaction sent "
        "in-process (proxies/nftmap.py; bench/stable_switch.py measures it alone), then the old upstream's "
        "connections drain (idle pooled ones closed through sock_diag; proxies/stable.py); what remains is "
        "Python over the 1000-route table, `routes.json` written (fsync) and the drain's read of the kernel's "
        "TCP socket table, which walks every socket of the host. A fresh process first parses `routes.json` "
        "(one JSON decode, the cyclic collector paused) and reads only the changed app's line of `proxied.json` "
        "(the table the proxy was given: whole only when the proxy itself is told). traefik renames the app's file and waits until its API shows the route. A domain change is what the proxy itself must take: for nginx "
        "`nginx -t`, the reload, the master's 100 ms overlap and the old workers' exit; for caddy one admin-API "
        "call (a full config reload inside caddy). The keep-alive columns count failed requests of 8 keep-alive "
        "clients of another app while 10 upstream changes are applied.")
    if not args.no_write:
        write_section("bench/proxy.py", body)


if __name__ == "__main__":
    main()

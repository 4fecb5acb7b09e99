"""Proxy switches under load: `proxy:set --global TYPE` through every pair of nginx, caddy and traefik, with
keep-alive and non-keep-alive clients at the same time (bench/zero_downtime.py's clients).

Prints per switch (old -> new) and client kind: requests, failed requests, how many of those a retry on a new
connection fixed; and the switch's time (the command's). A switch starts the new proxy beside the old one on the
same ports (one SO_REUSEPORT group per port), steers new connections to it, then stops the old one: the old
proxy's queued connections migrate, its in-flight requests finish. Its idle keep-alive connections close with it,
so a keep-alive client that sends on one at that moment fails (the retry column: what browsers do).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import publish
from bench.zero_downtime import CLIENTS, Stats, under_load
from tests.harness import Server, http_get, unique

ORDER = ("nginx", "caddy", "traefik", "nginx", "traefik", "caddy", "nginx")  # every ordered pair once
SETTLE = 1.0  # seconds of load before and after each switch


def switch_under_load(srv: Server, app: str, proxy: str) -> tuple[dict[str, Stats], float]:
    with under_load(srv, app) as kinds:
        time.sleep(SETTLE)
        t0 = time.monotonic()
        srv.cli("proxy:set", "--global", proxy)
        took = time.monotonic() - t0
        time.sleep(SETTLE)
    return kinds, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="times through every pair")
    parser.add_argument("--no-write", action="store_true", help="print only; docs/benchmarks.md is left as it is")
    args = parser.parse_args()
    rows: list[tuple[str, str, dict[str, Stats], float]] = []
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp), PUSHDOCK_PROXY=ORDER[0]).start()
        try:
            srv.add_key()
            app = unique("sw")
            assert srv.push(srv.app_repo(app, body="switched"), app).returncode == 0
            for _ in range(args.rounds):
                for old, new in itertools.pairwise(ORDER):
                    kinds, took = switch_under_load(srv, app, new)
                    assert http_get(srv.proxy_port, f"{app}.localhost") == (200, "switched")
                    rows.append((old, new, kinds, took))
                    print(old, "->", new, f"{took:.2f} s",
                          {k: (len(s.latencies), s.failed, dict(s.errors)) for k, s in kinds.items()}, flush=True)
        finally:
            srv.cli("proxy:stop", "--all", check=False)
            srv.stop()
    lines = [
        f"`proxy:set --global` under load through every ordered pair of proxies, {args.rounds} rounds: "
        f"{CLIENTS} non-keep-alive and {CLIENTS} keep-alive client threads at once, GET / through the proxy, "
        f"{SETTLE:.0f} s of load before and after each switch.",
        "",
        "| switch | client | requests | failed | failed, then OK on a retry | switch time (median) |",
        "|---|---|---|---|---|---|",
    ]
    pairs = list(dict.fromkeys((old, new) for old, new, _, _ in rows))
    for old, new in pairs:
        mine = [r for r in rows if (r[0], r[1]) == (old, new)]
        took = sorted(r[3] for r in mine)[len(mine) // 2]
        for kind in ("non-keep-alive", "keep-alive"):
            n = sum(len(r[2][kind].latencies) for r in mine)
            failed = sum(r[2][kind].failed for r in mine)
            retried = sum(r[2][kind].retried_ok for r in mine)
            lines.append(f"| {old} → {new} | {kind} | {n} | {failed} | {retried} | {took:.2f} s |")
    errors = []
    for old, new in pairs:
        for kind in ("non-keep-alive", "keep-alive"):
            total: Counter[str] = Counter()
            for r in rows:
                if (r[0], r[1]) == (old, new):
                    total += r[2][kind].errors
            if total:
                errors.append(f"{old} → {new} {kind}: {dict(total)}")
    publish("bench/proxy_switch.py", lines, errors=errors, write=not args.no_write, note=(
        "A keep-alive client's connection stays with the proxy it was opened to (only new connections are steered "
        "to the new one); the old proxy closes it when it exits (nginx, caddy and traefik all close idle "
        "connections at a graceful stop), and a request sent on it at that moment fails: about one per switch, "
        "each OK when sent again on a new connection (what browsers do for an idempotent request on a reused "
        "connection). Redeploys never stop a proxy (bench/zero_downtime.py: 0 for both kinds)."))


if __name__ == "__main__":
    main()

"""Stable-address switch benchmark (issue 22): the ways to send one stable port's new connections elsewhere, with
1000 ports steered, measured alone (the kernel's part of one app's redeploy in bench/proxy.py).

- `iptables -R`: one rule of this data dir's nat chain replaced (pushdock's way before; now the fallback without nft).
- `nft -f -`, one short call: the map's element deleted and added in one transaction.
- `nft -i`, a long-lived process fed the same two commands (`--echo`: its answer shows the commit is done).
- netlink in-process (proxies/nftmap.py, pushdock's way): the same batch sent on a socket kept open.
Each way runs 30 times on its own table or chain (of a temp data dir; removed at the end).

Usage: .venv/bin/python bench/stable_switch.py [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess  # a benchmark drives `nft -i` as a coprocess, which pushdock/proc.py does not offer
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger

from bench._report import write_section
from proxies import stable
from pushdock.routing import Upstream

PORTS = 1000
SWITCHES = 30


def measure(switch: Callable[[int], None]) -> tuple[float, float, float]:
    times = []
    for k in range(SWITCHES):
        t0 = time.perf_counter()
        switch(k)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, min(times) * 1000, max(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if os.geteuid() != 0 or not stable.usable() or not stable._nft():
        sys.exit("needs root, nft and iptables")
    root = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    st = stable.Stable(root / "nginx")
    st.root.mkdir()
    rules = {stable.PORT_BASE + i: Upstream("127.0.0.1", 10000 + i % 4) for i in range(PORTS)}
    port = stable.PORT_BASE + PORTS - 1
    rows = []
    coproc: subprocess.Popen[str] | None = None
    try:
        # the iptables chain, as before
        st._install_chain(None, rules)
        order = sorted(rules).index(port) + 1

        def ipt(k: int) -> None:
            stable._run(["iptables", "-w", "5", "-t", "nat", "-R", st.chain, str(order),
                         *st._rule(port, Upstream("127.0.0.1", 11000 + k))])
        rows.append(("`iptables -R` (a process per switch)", measure(ipt)))
        st._remove_chain(only_if_present=False)

        st.nat.write(rules)
        t = f"ip {st.nat.table}"

        def script(k: int) -> str:
            return (f"delete element {t} up {{ {port} }}\n"
                    f"add element {t} up {{ {port} : 127.0.0.1 . {12000 + k} }}\n")

        def nft_f(k: int) -> None:
            subprocess.run(["nft", "-f", "-"], input=script(k), text=True, check=True)
        rows.append(("`nft -f -`, one short call per switch", measure(nft_f)))

        coproc = subprocess.Popen(["nft", "--echo", "-i"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        proc = coproc

        def nft_i(k: int) -> None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(script(k).replace("\n", "; ", 1))
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line.startswith("add element"), line

        rows.append(("`nft -i`, one long-lived process (`--echo` read back)", measure(nft_i)))

        def netlink(k: int) -> None:
            st.nat.replace({port: Upstream("127.0.0.1", 13000 + k)}, {port})
        rows.append(("nf_tables netlink in-process (pushdock: proxies/nftmap.py)", measure(netlink)))
    finally:
        if coproc is not None and coproc.stdin is not None:
            coproc.stdin.close()
            coproc.wait()
        st.remove()
        st._remove_chain(only_if_present=True)
    table = ["| way | median | min | max |", "|---|---|---|---|"]
    for name, (med, lo, hi) in rows:
        print(f"{name:62} median {med:7.3f} ms, min {lo:7.3f}, max {hi:7.3f}", flush=True)
        table.append(f"| {name} | {med:.3f} ms | {lo:.3f} ms | {hi:.3f} ms |")
    body = (__doc__ or "").split("Usage:")[0].strip() + "\n\n" + "\n".join(table) + "\n\n" + (
        "Where the programs' time goes (strace): each `iptables`/`nft` call reads the host's whole "
        "ruleset (Docker's iptables-nft rules included) before it changes anything, and when its netlink socket "
        "closes after a commit the kernel flushes nf_tables' deferred frees, an RCU grace period, before the close "
        "returns (`close()` 10.7 ms after a 55 µs batch). The long-lived `nft -i` skips the grace period but still "
        "re-reads the ruleset for every command; the in-process socket does neither.")
    if not args.no_write:
        write_section("bench/stable_switch.py", body)


if __name__ == "__main__":
    main()

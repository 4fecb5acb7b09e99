"""Stable upstream addresses, switched underneath the proxy (issue 22): a redeploy reloads no proxy.

Every reload of nginx (its old workers exit) and every admin-API change of caddy (its old servers shut down)
closes idle client keep-alive connections, and a client that reuses one at that moment loses its request.
So the proxy is never told about a redeploy: it routes each app to stable addresses of its own, one per
upstream (`127.A.B.1:PORT`, a loopback address of this data dir, a block of SLOTS ports per app), and a
kernel DNAT rule (iptables' nat table, a chain of this data dir) sends new connections to each address on
to the current container. Switching the rule is one `iptables-restore` (atomic); connections already open
keep going where they went (conntrack), new ones go to the new container, like kamal-proxy's in-process
target swap but underneath an unmodified proxy.

What was open to the old container is drained: the proxy's upstream keep-alive connections to it are closed
as soon as they are idle (the kernel's sock_destroy, `ss -K`: the proxy sees a pooled connection closed
and opens a new one, to the new container; a request in flight is never cut), and the busy ones rotate
(nginx: `keepalive_requests`). A switch returns once no connection opened before it remains. caddy's busy
ones never rotate (Go reuses a pooled connection as long as requests come, and a busy connection is never
cut: only the kernel's timings are known, not where an HTTP response ends), so caddy waits at most
CaddyProxy.drain_timeout for them, and the rest end when the old container retires (a graceful stop; Go retries
an idempotent request that meets a closed pooled connection).

Only routes whose upstreams are all loopback addresses (the schedulers publish on 127.0.0.1) and at most
SLOTS of them are steered; anything else goes to the proxy as before (a reload). Needs root, iptables and
`ss`; `PUSHDOCK_STABLE_UPSTREAMS=0` turns it off. Without it the proxies work as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import shutil
import time
from pathlib import Path

from loguru import logger

from proxies.model import Route, Table
from pushdock import proc
from pushdock.errors import PushdockError
from pushdock.routing import Upstream
from pushdock.state import atomic_write

SLOTS = 8  # stable addresses per app: a route with more upstreams is not steered
PORT_BASE = 20000
MAX_APPS = (65535 - PORT_BASE) // SLOTS
IDLE_MS = 100  # a pooled upstream connection idle this long after its last response is closed at a switch
DRAIN_TIMEOUT = 35.0
POLL = 0.01
KILL_CHUNK = 64

Rules = dict[int, Upstream]  # stable port -> where new connections go


class StableError(Exception):
    """iptables refused a change: the caller keeps what ran."""


@dataclasses.dataclass
class Stable:
    """The stable addresses of one proxy's data dir (`root`: DATA_DIR/<proxy>)."""

    root: Path

    def __post_init__(self) -> None:
        digest = hashlib.sha1(str(self.root).encode()).digest()
        self.address = f"127.{64 + digest[0] % 128}.{digest[1]}.{1 + digest[2] % 254}"
        self.chain = "PD-" + digest[3:10].hex()  # iptables: chain names up to 28 characters
        self.slots_path = self.root / "stable-slots.json"
        self.rules_path = self.root / "stable-rules.json"

    # -- what the proxy is told ----------------------------------------------------------------------
    def view(self, table: Table, *, allocate: bool = True) -> tuple[Table, Rules]:
        """The table with every steerable route's upstreams replaced by its stable addresses, and the rules
        that send those addresses to the real upstreams."""
        slots = self._slots()
        out: Table = {}
        rules: Rules = {}
        grew = False
        for app, route in table.items():
            if not _steerable(route):
                out[app] = route
                continue
            if app not in slots:
                if not allocate:
                    out[app] = route
                    continue
                free = sorted(set(range(MAX_APPS)) - set(slots.values()))
                if not free:
                    out[app] = route
                    continue
                slots[app], grew = free[0], True
            base = PORT_BASE + slots[app] * SLOTS
            stable = tuple(Upstream(self.address, base + k) for k in range(len(route.upstreams)))
            rules.update({base + k: u for k, u in enumerate(route.upstreams)})
            out[app] = dataclasses.replace(route, upstreams=stable)
        if grew:
            atomic_write(self.slots_path, json.dumps(slots))
        return out, rules

    def forget(self, apps: set[str]) -> None:
        """Free the slots of apps no longer routed."""
        slots = self._slots()
        if apps & set(slots):
            atomic_write(self.slots_path, json.dumps({a: i for a, i in slots.items() if a not in apps}))

    def _slots(self) -> dict[str, int]:
        try:
            raw = json.loads(self.slots_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(a): int(i) for a, i in raw.items()}

    # -- the kernel's rules --------------------------------------------------------------------------
    def installed(self) -> Rules | None:
        try:
            raw = json.loads(self.rules_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return {int(p): Upstream(str(h), int(port)) for p, (h, port) in raw.items()}

    def install(self, rules: Rules, *, force: bool = False) -> None:
        """Make the chain send each stable port to its upstream (one atomic iptables-restore)."""
        if not force and self.installed() == rules:
            return
        self._ensure_jump()
        lines = ["*nat", f":{self.chain} - [0:0]"]  # declaring the chain flushes it (--noflush: only it)
        lines += [f"-A {self.chain} -d {self.address}/32 -p tcp -m tcp --dport {port} -j DNAT "
                  f"--to-destination {u.host}:{u.port}" for port, u in sorted(rules.items())]
        lines.append("COMMIT\n")
        _run(["iptables-restore", "-w", "5", "--noflush"], "\n".join(lines))
        atomic_write(self.rules_path, json.dumps({str(p): [u.host, u.port] for p, u in rules.items()}))

    def _ensure_jump(self) -> None:
        jump = ["OUTPUT", "-d", f"{self.address}/32", "-p", "tcp", "-j", self.chain]
        with contextlib.suppress(StableError):
            _run(["iptables", "-w", "5", "-t", "nat", "-N", self.chain])  # exists already: fine
        try:
            _run(["iptables", "-w", "5", "-t", "nat", "-C", *jump])
        except StableError:
            _run(["iptables", "-w", "5", "-t", "nat", "-I", *jump])

    def remove(self) -> None:
        """Delete the chain and its jump (the proxy stopped)."""
        jump = ["OUTPUT", "-d", f"{self.address}/32", "-p", "tcp", "-j", self.chain]
        for argv in (["-D", *jump], ["-F", self.chain], ["-X", self.chain]):
            with contextlib.suppress(StableError, OSError):
                _run(["iptables", "-w", "5", "-t", "nat", *argv])
        self.rules_path.unlink(missing_ok=True)

    # -- draining --------------------------------------------------------------------------------------
    def drain(self, ports: set[int], timeout: float = DRAIN_TIMEOUT) -> bool:
        """After a switch of `ports`: wait until every connection to them that was open is gone, closing the
        idle ones (IDLE_MS since their last response; a busy one is never cut). Returns False after `timeout`
        (the caller goes on: what is left ends when the old container retires)."""
        if not ports:
            return True
        waiting = set(self._connections(ports))
        deadline = time.monotonic() + timeout
        while waiting:
            now = self._connections(ports)
            waiting &= set(now)
            idle = [key for key in waiting if now[key].idle_for(IDLE_MS)]
            for i in range(0, len(idle), KILL_CHUNK):
                self._kill(idle[i:i + KILL_CHUNK])
            if not waiting:
                break
            if time.monotonic() > deadline:
                logger.info("connections to the old upstream left to end with it", count=len(waiting))
                return False
            time.sleep(POLL)
        return True

    def _connections(self, ports: set[int]) -> dict[Key, Sample]:
        """The proxy's established connections to the stable ports, by (local port, stable port, inode)."""
        out = proc.run(["ss", "-tneiH", "state", "established", "dst", self.address], check=False, timeout=10).stdout
        found = {}
        lines = out.splitlines()
        for i, line in enumerate(lines):
            if not line or line[0].isspace():
                continue
            f = line.split()
            if len(f) < 4:
                continue
            local, peer = f[2], f[3]
            port = int(peer.rpartition(":")[2])
            if port not in ports:
                continue
            ino = next((x for x in f[4:] if x.startswith("ino:")), "")
            info = lines[i + 1] if i + 1 < len(lines) and lines[i + 1][:1].isspace() else ""
            found[(int(local.rpartition(":")[2]), port, ino)] = Sample.parse(f[0] == "0" and f[1] == "0", info)
        return found

    def _kill(self, keys: list[Key]) -> None:
        """sock_destroy each connection (by its local port and stable port)."""
        expr = " or ".join(f"( sport = :{lp} and dport = :{sp} )" for lp, sp, _ in keys)
        proc.run(["ss", "-K", "-tnH", "state", "established", "dst", self.address, f"( {expr} )"], check=False,
                 timeout=10)


Key = tuple[int, int, str]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One connection as `ss -tnei` shows it."""

    quiet: bool  # nothing queued either way, nothing unacknowledged, and it received after it last sent
    lastrcv: int  # ms since it last received
    sent: int
    received: int

    @classmethod
    def parse(cls, queues_empty: bool, info: str) -> Sample:
        fields = dict(x.split(":", 1) for x in info.split() if ":" in x and not x.startswith("("))
        try:
            lastsnd, lastrcv = int(fields["lastsnd"]), int(fields["lastrcv"])
            sent, received = int(fields.get("bytes_sent", "0")), int(fields.get("bytes_received", "0"))
        except (KeyError, ValueError):
            return cls(False, 0, 0, 0)
        quiet = queues_empty and "unacked" not in fields and received > 0 and lastrcv <= lastsnd
        return cls(quiet, lastrcv, sent, received)

    def idle_for(self, ms: int) -> bool:
        """Idle after a response for `ms`: a proxy that sends a request on it meanwhile sees a pooled
        connection closed and retries on a new one (nginx and Go pool last-in first-out: the longest idle
        connection is the last one taken)."""
        return self.quiet and self.lastrcv >= ms


def _steerable(route: Route) -> bool:
    if not 0 < len(route.upstreams) <= SLOTS:
        return False
    for u in route.upstreams:
        try:
            if not ipaddress.IPv4Address(u.host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def usable() -> bool:
    """Whether stable upstreams can work here: root, iptables-restore and ss; not turned off."""
    if os.environ.get("PUSHDOCK_STABLE_UPSTREAMS", "1") == "0":
        return False
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("iptables", "iptables-restore", "ss"))


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        res = proc.run(argv, input=stdin, check=False, timeout=30)
    except (OSError, PushdockError) as e:
        raise StableError(f"{argv[0]}: {e}") from e
    if res.returncode != 0:
        raise StableError(f"{argv[0]}: {(res.stderr or res.stdout).strip()[:300]}")

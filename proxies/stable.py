"""Stable upstream addresses, switched underneath the proxy (issue 22): a redeploy reloads no proxy.

Every reload of nginx (its old workers exit) and every admin-API change of caddy (its old servers shut down)
closes idle client keep-alive connections, and a client that reuses one at that moment loses its request.
So the proxy is never told about a redeploy: it routes each app to stable addresses of its own, one per
upstream (`127.A.B.1:PORT`, a loopback address of this data dir, a block of SLOTS ports per app), and a
kernel DNAT rule sends new connections to each address on to the current container: an nftables map of
this data dir, stable port -> upstream (nftmap.py; a switch is its elements replaced in one netlink
transaction, in-process, ~20 µs), or where `nft` is missing an iptables nat chain (`iptables -R`, a process
per switch). Connections already open keep going where they went (conntrack), new ones go to the new
container, like kamal-proxy's in-process target swap but underneath an unmodified proxy.

What was open to the old container is drained: the proxy's idle pooled connections to it are closed (the
kernel's sock_destroy, `ss -K`: the proxy sees a pooled connection closed and opens a new one, to the
new container; a request in flight is never cut), and nginx's busy ones rotate (`keepalive_requests`). caddy's
never rotate (Go reuses a busy pooled connection for as long as requests come): during a switch caddy sends the
app's requests past its pool (proxies/caddy/config.py), so they go idle and are closed the same way. A switch
returns once no connection opened before it remains.

Only routes whose upstreams are all loopback addresses (the schedulers publish on 127.0.0.1) and at most
SLOTS of them are steered; anything else goes to the proxy as before (a reload). Needs root and nft or iptables;
`PUSHDOCK_STABLE_UPSTREAMS=0` turns it off. Without it the proxies work as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

from proxies import nftmap
from proxies.model import Route, Table, collector_paused
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
# by root, app: (route, its slot (None: not steered), what the proxy is told, its rules)
_views: dict[str, dict[str, tuple[Route, int | None, Route, tuple[tuple[int, Upstream], ...]]]] = {}
_installed: dict[Path, tuple[tuple[int, int, int], Rules]] = {}  # rules files read, by their stat
_slot_files: dict[Path, tuple[tuple[int, int, int], dict[str, int]]] = {}  # slots files read, by their stat


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
        self.nat = nftmap.NatMap("pushdock_" + digest[3:10].hex(), self.address)
        self.slots_path = self.root / "stable-slots.json"
        self.rules_path = self.root / "stable-rules.json"

    # -- what the proxy is told ----------------------------------------------------------------------
    def view(self, table: Table, *, allocate: bool = True) -> tuple[Table, Rules]:
        """The table with every steerable route's upstreams replaced by its stable addresses, and the rules
        that send those addresses to the real upstreams."""
        with collector_paused():
            return self._view(table, allocate=allocate)

    def _view(self, table: Table, *, allocate: bool) -> tuple[Table, Rules]:
        slots = self._slots()
        out: Table = {}
        rules: Rules = {}
        grew = False
        cache = _views.setdefault(str(self.root), {})
        for app, route in table.items():
            hit = cache.get(app)  # a change at 1000 apps: 999 routes are the same objects as last time
            if hit is not None and hit[0] is route and hit[1] == slots.get(app):
                rules.update(hit[3])
                out[app] = hit[2]
                continue
            if not _steerable(route):
                cache[app] = (route, None, route, ())
                out[app] = route
                continue
            if app not in slots:
                free = sorted(set(range(MAX_APPS)) - set(slots.values())) if allocate else []
                if not free:
                    out[app] = route
                    continue
                slots[app], grew = free[0], True
            base = PORT_BASE + slots[app] * SLOTS
            stable = tuple([Upstream(self.address, base + k) for k in range(len(route.upstreams))])
            pairs = tuple([(base + k, u) for k, u in enumerate(route.upstreams)])
            cache[app] = (route, slots[app], route.with_upstreams(stable), pairs)
            rules.update(pairs)
            out[app] = cache[app][2]
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
            st = self.slots_path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            hit = _slot_files.get(self.slots_path)
            if hit is not None and hit[0] == key:
                return dict(hit[1])
            raw = json.loads(self.slots_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        slots = {str(a): int(i) for a, i in raw.items()}
        _slot_files[self.slots_path] = (key, slots)
        return dict(slots)

    # -- the kernel's rules --------------------------------------------------------------------------
    def installed(self) -> Rules | None:
        """The rules last installed (None: none, or not known: the chain is rewritten whole)."""
        try:
            st = self.rules_path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            hit = _installed.get(self.rules_path)
            if hit is not None and hit[0] == key:
                return dict(hit[1])
            raw = json.loads(self.rules_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        rules = {int(p): Upstream(str(h), int(port)) for p, (h, port) in raw.items()}
        _installed[self.rules_path] = (key, rules)
        return dict(rules)

    def install(self, rules: Rules, *, force: bool = False) -> None:
        """Make new connections to each stable port go to its upstream, atomically. With nft: the changed
        elements of the map replaced in one netlink transaction (the table written whole when it is not known
        or the kernel refuses). With iptables: the chain holds one rule per port, sorted by port: when only
        targets change (a redeploy), each changed rule is replaced where it stands (`-R`, one call each);
        anything else rewrites the chain (one atomic iptables-restore)."""
        had = None if force else self.installed()
        if had == rules:
            return
        if _nft():
            self._install_map(had, rules)
        else:
            self._install_chain(had, rules)
        # Hosts are IPv4 addresses (_steerable): nothing to escape. Not fsynced: the file mirrors the kernel's
        # ruleset, which a power loss empties too; the first commit after a boot writes the table whole (the
        # proxy is not running: `force`; and a switch the kernel refuses falls back to that). An fsync here
        # waited for the journal to flush other files' data (5 ms at 1000 apps, right after a rebuild).
        atomic_write(self.rules_path, "{" + ",".join(f'"{p}":["{u.host}",{u.port}]' for p, u in rules.items()) + "}",
                     durable=False)
        st = self.rules_path.stat()  # what was written is what the next change reads: not parsed again
        _installed[self.rules_path] = ((st.st_mtime_ns, st.st_size, st.st_ino), dict(rules))

    def _install_map(self, had: Rules | None, rules: Rules) -> None:
        if had is not None:
            changed = {p: u for p, u in rules.items() if had.get(p) != u}
            try:
                self.nat.replace(changed, {p for p in had if p not in rules or p in changed})
                return
            except OSError as e:  # the table or an element is not what the rules file says: write it whole
                logger.info("upstream map rewritten whole", reason=str(e))
        try:
            self.nat.write(rules)
        except nftmap.MapError as e:
            raise StableError(str(e)) from e
        self._remove_chain(only_if_present=True)  # an older pushdock's iptables chain must not compete

    def _install_chain(self, had: Rules | None, rules: Rules) -> None:
        changed = [] if had is None else [p for p in sorted(rules) if had.get(p) != rules[p]]
        if had is not None and set(had) == set(rules) and len(changed) <= SLOTS:
            order = {p: i + 1 for i, p in enumerate(sorted(rules))}
            for port in changed:
                _run(["iptables", "-w", "5", "-t", "nat", "-R", self.chain, str(order[port]),
                      *self._rule(port, rules[port])])
        else:
            self._ensure_jump()
            lines = ["*nat", f":{self.chain} - [0:0]"]  # declaring the chain flushes it (--noflush: only it)
            lines += [" ".join(["-A", self.chain, *self._rule(port, u)]) for port, u in sorted(rules.items())]
            lines.append("COMMIT\n")
            _run(["iptables-restore", "-w", "5", "--noflush"], "\n".join(lines))

    def _rule(self, port: int, u: Upstream) -> list[str]:
        return ["-d", f"{self.address}/32", "-p", "tcp", "-m", "tcp", "--dport", str(port), "-j", "DNAT",
                "--to-destination", f"{u.host}:{u.port}"]

    def _ensure_jump(self) -> None:
        jump = ["OUTPUT", "-d", f"{self.address}/32", "-p", "tcp", "-j", self.chain]
        with contextlib.suppress(StableError):
            _run(["iptables", "-w", "5", "-t", "nat", "-N", self.chain])  # exists already: fine
        try:
            _run(["iptables", "-w", "5", "-t", "nat", "-C", *jump])
        except StableError:
            _run(["iptables", "-w", "5", "-t", "nat", "-I", *jump])

    def remove(self) -> None:
        """Delete the table, or the chain and its jump (the proxy stopped)."""
        if _nft():
            self.nat.delete()
        self._remove_chain(only_if_present=_nft())
        self.rules_path.unlink(missing_ok=True)

    def _remove_chain(self, *, only_if_present: bool) -> None:
        if not shutil.which("iptables"):
            return
        if only_if_present:
            try:
                _run(["iptables", "-w", "5", "-t", "nat", "-S", self.chain])
            except StableError:
                return
        jump = ["OUTPUT", "-d", f"{self.address}/32", "-p", "tcp", "-j", self.chain]
        for argv in (["-D", *jump], ["-F", self.chain], ["-X", self.chain]):
            with contextlib.suppress(StableError, OSError):
                _run(["iptables", "-w", "5", "-t", "nat", *argv])

    # -- draining --------------------------------------------------------------------------------------
    def drain(self, ports: set[int], timeout: float = DRAIN_TIMEOUT) -> bool:
        """After a switch of `ports`: wait until every connection to them that was open is gone, closing the
        idle ones (IDLE_MS since their last response). A busy one is never cut: the kernel's timings show when a
        connection last moved, not where an HTTP response ends. Returns False after `timeout` (what is left ends
        when the old container retires)."""
        if not ports:
            return True
        dst = socket.inet_aton(self.address)
        waiting = {key for key, _, _ in _diag(dst, ports)}
        deadline = time.monotonic() + timeout
        while waiting:
            waiting = _sweep(dst, ports, waiting, IDLE_MS)
            if not waiting:
                break
            if time.monotonic() > deadline:
                logger.info("connections to the old upstream left to end with it", count=len(waiting))
                return False
            time.sleep(POLL)
        return True


# -- the kernel's socket table (sock_diag), read and acted on in-process: a connection found idle is destroyed
# microseconds later, not after a subprocess started
NETLINK_SOCK_DIAG = 4  # not in every Python build's socket module
SOCK_DIAG_BY_FAMILY = 20
SOCK_DESTROY = 21
INET_DIAG_INFO = 2
TCP_ESTABLISHED = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_REQ = struct.Struct("=BBBxI")  # inet_diag_req_v2 head: family, protocol, ext, pad, states
_SOCKID = struct.Struct(">HH16s16sI8s")  # sport, dport, src, dst (network order), interface, cookie
_MSG = struct.Struct("=BBBB")  # inet_diag_msg head: family, state, timer, retrans
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_D_COND = 8
_BC_OP = struct.Struct("=BBH")  # inet_diag_bc_op: code, yes (bytes to jump when true), no (... when false)
_HOSTCOND = struct.Struct("=BBxxi")  # inet_diag_hostcond: family, prefix length, port (-1: any), then the address

Key = tuple[int, int, bytes]  # local port, stable port, the kernel's cookie


@dataclasses.dataclass(frozen=True)
class Sample:
    """What the kernel says of one connection of the proxy to a stable address."""

    quiet: bool  # nothing queued either way, nothing unacknowledged, and it received after it last sent
    lastrcv: int  # ms since it last received

    def idle_for(self, ms: int) -> bool:
        """Idle after a response for `ms`: a proxy that sends a request on it meanwhile sees a pooled
        connection closed and retries on a new one (nginx and Go pool last-in first-out: the longest idle
        connection is the last one taken)."""
        return self.quiet and self.lastrcv >= ms


def _request(kind: int, flags: int, sockid: bytes, ext: int, bytecode: bytes = b"") -> bytes:
    body = _REQ.pack(socket.AF_INET, socket.IPPROTO_TCP, ext, 1 << TCP_ESTABLISHED) + sockid
    if bytecode:
        body += struct.pack("=HH", 4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 0, 0) + body


def _to_address(dst: bytes) -> bytes:
    """inet_diag bytecode: only sockets whose peer is `dst` (any port). The kernel then formats only those,
    not every TCP socket of the host (thousands with many apps and their clients: ~5 ms a dump here)."""
    size = _BC_OP.size + _HOSTCOND.size + len(dst)
    # one condition: true jumps to the end (accept), false past it (reject)
    return _BC_OP.pack(INET_DIAG_BC_D_COND, size, size + 4) + _HOSTCOND.pack(socket.AF_INET, 32, -1) + dst


def _messages(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, off)
            if kind == NLMSG_DONE:
                return
            yield kind, data[off + 16:off + length]
            off += (length + 3) & ~3


def _diag(dst: bytes, ports: set[int], *, destroy_idle_ms: int | None = None,
          only: set[Key] | None = None) -> list[tuple[Key, Sample, bytes]]:
    """The established connections to `dst`:PORT for PORT in `ports` (with their socket id); with
    `destroy_idle_ms`, each of `only` idle that long is destroyed as soon as it is read (and left out)."""
    found = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl, \
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as killer:
        nl.sendall(_request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
                            _SOCKID.pack(0, 0, bytes(16), bytes(16), 0, b"\xff" * 8), 1 << (INET_DIAG_INFO - 1),
                            _to_address(dst)))
        for kind, body in _messages(nl):
            if kind == NLMSG_ERROR:
                raise OSError(-struct.unpack_from("=i", body)[0], "sock_diag dump refused")
            if len(body) < _MSG.size + _SOCKID.size + 20:
                continue
            raw_id = body[_MSG.size:_MSG.size + _SOCKID.size]
            sport, dport, _src, addr, _ifc, cookie = _SOCKID.unpack(raw_id)
            if addr[:4] != dst or dport not in ports:
                continue
            rqueue, wqueue = struct.unpack_from("=II", body, _MSG.size + _SOCKID.size + 4)
            sample = _sample(body[_MSG.size + _SOCKID.size + 20:], rqueue == 0 and wqueue == 0)
            key = (sport, dport, cookie)
            if (destroy_idle_ms is not None and (only is None or key in only)
                    and sample.idle_for(destroy_idle_ms)):
                _destroy(killer, raw_id)
                continue
            found.append((key, sample, raw_id))
    return found


def _destroy(killer: socket.socket, raw_id: bytes) -> None:
    killer.sendall(_request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, raw_id, 0))
    with contextlib.suppress(OSError):
        killer.recv(4096)  # the ack; ENOENT: it closed by itself meanwhile


def _sample(attrs: bytes, queues_empty: bool) -> Sample:
    off = 0
    while off + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, off)
        if length < 4:
            break
        if kind == INET_DIAG_INFO and length >= 4 + 136:
            info = attrs[off + 4:off + length]
            unacked = struct.unpack_from("=I", info, 24)[0]
            lastsnd, _, lastrcv = struct.unpack_from("=III", info, 44)
            received = struct.unpack_from("=Q", info, 128)[0]
            quiet = queues_empty and unacked == 0 and received > 0 and lastrcv <= lastsnd
            return Sample(quiet, lastrcv)
        off += (length + 3) & ~3
    return Sample(False, 0)


def _sweep(dst: bytes, ports: set[int], waiting: set[Key], idle_ms: int) -> set[Key]:
    """Destroy the connections of `waiting` idle for `idle_ms`; those of them still open."""
    return waiting & {key for key, _, _ in _diag(dst, ports, destroy_idle_ms=idle_ms, only=waiting)}


def _steerable(route: Route) -> bool:
    return 0 < len(route.upstreams) <= SLOTS and all([_loopback(u.host) for u in route.upstreams])


@functools.lru_cache(maxsize=256)
def _loopback(host: str) -> bool:
    try:
        return ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        return False


def usable(enabled: bool = True) -> bool:
    """Whether stable upstreams can work here: root and nft or iptables-restore; not turned off
    (PUSHDOCK_STABLE_UPSTREAMS)."""
    if not enabled:
        return False
    return os.geteuid() == 0 and (_nft() or all(shutil.which(t) for t in ("iptables", "iptables-restore")))


@functools.lru_cache(maxsize=1)
def _nft() -> bool:
    """The nftables map, if nft is here; else the iptables chain."""
    return nftmap.available()


def _run(argv: list[str], stdin: str | None = None) -> None:
    try:
        res = proc.run(argv, input=stdin, check=False, timeout=30)
    except (OSError, PushdockError) as e:
        raise StableError(f"{argv[0]}: {e}") from e
    if res.returncode != 0:
        raise StableError(f"{argv[0]}: {(res.stderr or res.stdout).strip()[:300]}")

"""Can the proxy listen on a host port: is it free, or held only by this data dir's own proxies?

A port is tried the way the proxies listen (0.0.0.0, TCP): if the bind succeeds, it is free. If not, the
sockets listening on it (/proc/net/tcp, tcp6) are compared with those the proxy processes hold
(/proc/PID/fd): a port one of our proxies already listens on (for another mapping, of this app or another,
or while `proxy:set --global` switches) is ours to use; anything else holds it and the proxy could not
bind it, so the mapping is refused before any configuration is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from loguru import logger

from pushdock.errors import PushdockError

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def taken(ports: Iterable[int], own_pids: Callable[[], Iterable[int]]) -> dict[int, str]:
    """The ports among `ports` that another program holds (or the proxy may not bind), with the reason.

    `own_pids()` (asked only if a port is busy) lists the processes of our proxies. Reading who listens
    costs ~50 ms on a host with thousands of connections: callers leave out the ports the running proxy
    is known to listen on.
    """
    out: dict[int, str] = {}
    busy = []
    for port in sorted(set(ports)):
        err = _bind_error(port)
        if err == errno.EADDRINUSE:
            busy.append(port)
        elif err is not None:
            out[port] = f"cannot be bound: {os.strerror(err)}"
    if busy:
        holders, own = _listening(set(busy)), _socket_inodes(own_pids())
        for port in busy:
            if not holders.get(port) or not holders[port] <= own:
                out[port] = "in use by another program"
    return dict(sorted(out.items()))


def _bind_error(port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT do not count
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            return e.errno or errno.EADDRINUSE
    return None


def bind(ports: list[int], proxy: str) -> list[socket.socket]:
    """Listening sockets on 0.0.0.0 for a proxy to inherit (caddy, traefik), one per port, in order.

    Every proxy listens IPv4 with SO_REUSEPORT, so the sockets of all of them on a port form one group
    (the kernel keeps a group per address family): a proxy starting beside another (a switch, a restart)
    joins the other's group and proxies/steer.py can steer the group's new connections from one to the
    other. Go programs listen dual-stack (IPv6) on a wildcard address when left to bind it themselves:
    a group of their own, which IPv4 clients reach only once every IPv4 socket has closed.
    """
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("0.0.0.0", port))
            s.listen(4096)
    except OSError as e:
        for s in sockets:
            s.close()
        raise PushdockError(f"{proxy} cannot listen on port {ports[len(sockets) - 1]}: {e.strerror}") from e
    return sockets


def group(ports: set[int] | None) -> dict[int, set[int]]:
    """Inodes of the IPv4 sockets listening on 0.0.0.0 on each of `ports` (None: every port): the
    SO_REUSEPORT group the proxies share on that port."""
    return _listening(ports, tables=("/proc/net/tcp",), address="00000000")


def _listening(ports: set[int] | None, *, tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6"),
               address: str | None = None) -> dict[int, set[int]]:
    """Inodes of the sockets listening on each of `ports` (None: every port; any address, IPv4 or IPv6,
    unless `address` names one as /proc/net/tcp writes it)."""
    inodes: dict[int, set[int]] = {}
    for table in tables:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN:
                host, _, hex_port = fields[1].rpartition(":")
                port = int(hex_port, 16)
                if (ports is None or port in ports) and (address is None or host == address):
                    inodes.setdefault(port, set()).add(int(fields[9]))
    return inodes


def _socket_inodes(pids: Iterable[int]) -> set[int]:
    """Inodes of every socket the processes hold open."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
    return inodes


MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def migrate_on_close() -> bool:
    """Have the kernel hand the connections queued on a closing listener to another socket of its
    SO_REUSEPORT group (net.ipv4.tcp_migrate_req, Linux 5.14), instead of resetting them.

    A proxy that stops while another serves the same port (`proxy:set --global`, traefik's hand-over)
    closes its listening sockets with connections accepted by the kernel but not yet by the proxy: without
    this, each is reset (the client sees ECONNRESET). Set before such a stop; False if it cannot be set.
    """
    try:
        if MIGRATE_REQ.read_text().strip() != "1":
            MIGRATE_REQ.write_text("1\n")
    except OSError as e:
        logger.warning("cannot set net.ipv4.tcp_migrate_req: a stopping proxy may reset queued connections",
                       error=str(e))
        return False
    return True

"""Steer new connections on a port to one process of a SO_REUSEPORT group, for a proxy handing over to a new
process of itself: the new one listens before it has loaded its routes (traefik answers 404 until then).

The kernel balances connections across the sockets of a reuseport group by hash, unless a classic BPF program
is attached to the group (SO_ATTACH_REUSEPORT_CBPF): it returns the index of the socket to use, in the order
the sockets joined (an index past the end falls back to the hash). pushdock holds no socket of that group:
it takes a copy of the proxy's own listening socket with pidfd_getfd (Linux 5.6, same user: root here) and
attaches the program through it. Anything unsupported raises OSError: callers go on without steering.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from collections.abc import Iterator

from loguru import logger

from proxies import listen

SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68
SYS_PIDFD_GETFD = 438  # the same number on every architecture (new syscalls are unified)
BPF_RET_K = 0x06


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def _listening_fd(pid: int, port: int) -> int:
    """The fd number, in `pid`, of its socket of `port`'s group."""
    inodes = listen.group({port}).get(port, set())
    for entry in os.scandir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(entry.path)
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                return int(entry.name)
    raise OSError(f"process {pid} does not listen on port {port}")


@contextlib.contextmanager
def _socket_of(pid: int, port: int) -> Iterator[socket.socket]:
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, _listening_fd(pid, port), 0)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(pidfd)
    sock = socket.socket(fileno=fd)
    try:
        yield sock
    finally:
        sock.detach()
        os.close(fd)


def to_index(pid: int, port: int, index: int) -> None:
    """Every new connection on `port` to the group's socket number `index` (0: the first that listened)."""
    insn = (_Filter * 1)(_Filter(BPF_RET_K, 0, 0, index))
    prog = _Prog(1, insn)
    with _socket_of(pid, port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(ctypes.string_at(
            ctypes.addressof(prog), ctypes.sizeof(prog))))


def release(pid: int, port: int) -> None:
    """Back to the kernel's hash across the group."""
    with _socket_of(pid, port) as sock, contextlib.suppress(OSError):  # ENOENT: nothing attached
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)


def hold(ports: list[int], hint: list[int]) -> list[tuple[int, int]]:
    """On every port some process listens on already, steer new connections to the group's first socket
    (the process listening longest), so that a socket joining the group next gets none until `to_index`
    or `release`. `hint`: pids likely to hold them (the rest of the host is searched if they do not).
    Returns (pid, port) pairs to `release` with; a port that cannot be steered is left out (and logged)."""
    groups = listen.group(set(ports))
    holders = _holders({inode: port for port, inodes in groups.items() for inode in inodes}, hint)
    held = []
    for port in ports:
        pid = holders.get(port)
        if pid is None:
            continue
        try:
            to_index(pid, port, 0)
        except OSError as e:
            logger.warning("cannot steer connections while a proxy starts", port=port, error=str(e))
            continue
        held.append((pid, port))
    return held


def _holders(ports_of: dict[int, int], hint: list[int]) -> dict[int, int]:
    """A pid holding each port's listening socket (`ports_of`: inode -> port), the hinted ones looked at first."""
    found: dict[int, int] = {}
    wanted = set(ports_of.values())
    if not wanted:
        return found
    pids = [*hint, *(int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and int(e.name) not in hint)]
    for pid in pids:
        for inode in listen._socket_inodes([pid]) & ports_of.keys():
            found.setdefault(ports_of[inode], pid)
        if len(found) == len(wanted):
            break
    return found


def hand_over(old_pids: list[int], new_pids: list[int]) -> list[tuple[int, int]]:
    """On every port where both an old and a new proxy listen, steer new connections to the new one's first socket.

    The old proxy's sockets joined the port's group first, so the new one's first socket is index `len(old)`.
    Done before the old proxy stops, it has nothing new to accept while it shuts down (nginx closes a connection
    it accepted but has not read yet). Returns (pid, port) pairs to `release` once the old one is gone; a port
    that cannot be steered is left to the kernel's hash (and to tcp_migrate_req)."""
    old_inodes, new_inodes = listen._socket_inodes(old_pids), listen._socket_inodes(new_pids)
    steered = []
    for port, inodes in listen.group(None).items():
        n_old, n_new = len(inodes & old_inodes), len(inodes & new_inodes)
        if not n_old or not n_new or n_old + n_new != len(inodes):  # a third holder: its order is unknown
            continue
        for pid in new_pids:
            try:
                to_index(pid, port, n_old)
            except OSError:
                continue
            steered.append((pid, port))
            break
    return steered

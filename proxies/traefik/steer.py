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
    """The fd number, in `pid`, of its socket listening on `port`."""
    inodes = listen._listening({port}).get(port, set())
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


def sole_listener(pid: int, port: int) -> bool:
    """Whether `pid` holds the only socket listening on `port` (then a process listening next is index 1)."""
    holders = listen._listening({port}).get(port, set())
    return len(holders) == 1 and holders <= listen._socket_inodes([pid])


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

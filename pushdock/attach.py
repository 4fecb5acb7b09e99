"""This process's stdin/stdout/stderr attached to a process in a container (`run`, `enter`, a service's shell).

With a terminal the container gets a TTY, the local terminal goes raw and the container's TTY follows its size
(polled: behind SSH this process gets no SIGWINCH); without one, docker's multiplexed frames are split back into
stdout and stderr, byte for byte (dumps go through here). SIGTERM or SIGHUP (the SSH client left) ends the session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from loguru import logger

from pushdock.errors import PushdockError

CHUNK = 65536
RESIZE_POLL = 0.5  # seconds between looks at the terminal size


def exec_in(api: Any, container_id: str, argv: list[str], *, tty: bool) -> int:
    """Run argv in a running container (docker's low-level `api`) attached to this process's stdio; its exit status."""
    with ended_by_signals():
        exec_id = api.exec_create(container_id, argv, stdin=True, stdout=True, stderr=True, tty=tty)["Id"]
        sock = api.exec_start(exec_id, tty=tty, socket=True)
        fds = Fds.of_sys()
        with raw(fds.stdin if tty else None):
            if tty:
                threading.Thread(target=follow_size, args=(api.exec_resize, exec_id, fds),
                                 name="pushdock-enter-size", daemon=True).start()
            pump(sock, fds, tty)
        return int(api.exec_inspect(exec_id).get("ExitCode") or 0)


class Fds:
    """This process's stdio as file descriptors (None when a stream has none, e.g. in tests)."""

    def __init__(self, stdin: int | None, stdout: int | None, stderr: int | None) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr

    @classmethod
    def of_sys(cls) -> Fds:
        def fd(stream: Any) -> int | None:
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
            try:
                return int(stream.fileno())
            except (AttributeError, OSError, ValueError):
                return None

        return cls(fd(sys.stdin), fd(sys.stdout), fd(sys.stderr))


class _Ended(BaseException):
    """SIGTERM or SIGHUP (the SSH client left): end the session; the container is removed on the way out."""


@contextlib.contextmanager
def ended_by_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Ended

    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    except _Ended:
        raise PushdockError("the session ended (signal)") from None
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def raw(fd: int | None) -> Iterator[None]:
    """The local terminal in raw mode for the session (keys go to the container's TTY), restored after."""
    import termios  # noqa: PLC0415 -- start-up: the tty modules loads when first used
    import tty  # noqa: PLC0415 -- start-up: the tty modules loads when first used

    if fd is None or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not the default TCSAFLUSH: keys typed ahead must reach the container
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int | None) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on fd, or None."""
    import fcntl  # noqa: PLC0415 -- start-up: the tty modules loads when first used
    import termios  # noqa: PLC0415 -- start-up: the tty modules loads when first used

    if fd is None or not os.isatty(fd):
        return None
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


def follow_size(resize: Callable[..., Any], target: str, fds: Fds) -> None:
    """Keep the container's (or exec's) TTY the size of ours: `resize(target, height=, width=)`."""
    import time  # noqa: PLC0415 -- start-up: time loads when first used

    last = None
    while True:
        size = terminal_size(fds.stdout) or terminal_size(fds.stdin)
        if size != last and size is not None:
            try:
                resize(target, height=size[0], width=size[1])
            except Exception:  # the container has ended
                return
            last = size
        time.sleep(RESIZE_POLL)


def pump(sock: Any, fds: Fds, tty: bool) -> None:
    """stdin -> container (a thread), container -> stdout/stderr (here) until the container closes the stream."""
    raw: socket.socket = getattr(sock, "_sock", sock)

    def feed() -> None:
        try:
            while fds.stdin is not None and (data := os.read(fds.stdin, CHUNK)):
                raw.sendall(data)
        except OSError as e:
            logger.debug("run input ended", error=str(e))
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)  # the container's stdin gets EOF

    threading.Thread(target=feed, name="pushdock-run-stdin", daemon=True).start()
    buf = b""
    while True:
        try:
            chunk = raw.recv(CHUNK)
        except OSError:
            break
        if not chunk:
            break
        if tty:
            _write(fds.stdout, chunk)
            continue
        buf += chunk
        while len(buf) >= 8:  # docker's multiplexed frames: stream, 3 zero bytes, big-endian length
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            stream, payload, buf = buf[0], buf[8:8 + size], buf[8 + size:]
            _write(fds.stderr if stream == 2 else fds.stdout, payload)


def _write(fd: int | None, data: bytes) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):  # our reader went away: the container still runs to its end
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

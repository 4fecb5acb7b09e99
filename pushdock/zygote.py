"""Warm workers: a fork server that `serve` starts once, with the workers' modules already imported.

A door's worker (`python -m gitserver.worker` for SSH, `python -m web.worker` for the API) spent ~0.3-0.5 s
importing before it did anything. The zygote is `python -m pushdock.zygote FD MODULE...`: it imports each MODULE
and the names in its `WARM` tuple, checks that nothing it must not hand down exists yet (a second thread, a socket
besides its control socket), then waits on FD, one end of a SOCK_SEQPACKET socketpair only `serve` holds (no path
on disk: nobody else can ask it for anything). The protocol, per command:

- serve sends one datagram, `fork 1` (in a session of its own) or `fork 0`, carrying four descriptors
  (SCM_RIGHTS): `conn` (one end of a fresh socketpair), the worker's stdin, stdout and stderr (pipe ends, or
  a pty's slave for `ssh -t`);
- the zygote forks; the child becomes a session leader first (the SSH door's hang-up is `os.killpg(pid,
  SIGTERM)`, so the pid is told only once that holds), then writes `pid N` on conn, takes the three
  descriptors as 0, 1, 2, reads its request from conn (one JSON document until EOF: the module to run and
  the whole environment), closes conn and runs `MODULE.main()` as `python -m MODULE` would;
- when the child ends the zygote writes `status S` (the raw wait status) on conn and closes it.

A worker is the zygote's child, not serve's: it outlives its client and serve as a spawned one did. serve closing
its end stops the zygote; running children go on. If the zygote is not there or dies, `exec_worker` spawns the
worker as before (and logs it once). Code changed on disk reaches workers when serve (and so the zygote) restarts.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TextIO

from pushdock import proc
from pushdock.errors import PushdockError
from pushdock.log import logger

PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL
STDOUT = asyncio.subprocess.STDOUT
_FDS = 4  # conn, stdin, stdout, stderr


class Worker(Protocol):
    """What the doors use of a worker: `asyncio.subprocess.Process` or `WarmProcess`."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdin(self) -> asyncio.StreamWriter | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    @property
    def stderr(self) -> asyncio.StreamReader | None: ...
    async def wait(self) -> int: ...
    def kill(self) -> None: ...


# -- serve's side --------------------------------------------------------------------------------------
class Zygote:
    """The running fork server, as serve holds it."""

    def __init__(self, process: proc.Process[bytes], control: socket.socket) -> None:
        self.process, self.control = process, control
        self.dead = False

    @classmethod
    def start(cls, modules: Sequence[str], env: Mapping[str, str]) -> Zygote:
        """Start one: it imports `modules` (and their WARM names) in the background; requests queue until then."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = proc.popen(
                [sys.executable, "-m", "pushdock.zygote", str(theirs.fileno()), *modules], env=dict(env),
                pass_fds=[theirs.fileno()], stdin=DEVNULL, stdout=DEVNULL,
                start_new_session=True)  # a Ctrl-C of serve must not reach it (nor, through it, its workers)
        finally:
            theirs.close()
        ours.setblocking(False)  # a zygote that stopped reading must not block the doors' event loops: spawn
        return cls(process, ours)

    def stop(self) -> None:
        """Close the control socket: the zygote exits; its running workers go on."""
        self.control.close()
        try:
            self.process.wait(5)
        except Exception:  # TimeoutExpired: it is stuck
            self.process.kill()
            self.process.wait()

    async def fork(self, module: str, env: Mapping[str, str], stdio: tuple[int, int, int],
                   new_session: bool) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Ask for a child running `module`; its pid and the connection its status comes on, or None if the
        zygote is not serving (the caller spawns instead). The stdio descriptors stay the caller's to close."""
        if self.dead:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fds = array.array("i", [theirs.fileno(), *stdio])
            try:
                self.control.sendmsg([b"fork 1" if new_session else b"fork 0"],
                                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
            except OSError as e:
                self._died(f"cannot reach it: {e}")
                ours.close()
                return None
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(json.dumps({"module": module, "env": dict(env)}).encode())
        writer.write_eof()
        line = await reader.readline()
        if line.startswith(b"status "):  # the child died before it could say its pid
            writer.close()
            raise PushdockError(f"a warm worker died at its start ({line.decode().strip()})")
        if not line.startswith(b"pid "):  # the zygote went away before it forked: nothing runs
            writer.close()
            self._died("it closed a request unanswered")
            return None
        return int(line.split()[1]), reader, writer

    def _died(self, why: str) -> None:
        if not self.dead:
            self.dead = True
            # Reap it (or end it, if it only stopped answering: its workers go on). A zygote that was killed closes
            # its control socket while it exits, a moment before it can be reaped: a bare poll() here could miss
            # it and leave a zombie for the rest of serve's life.
            with contextlib.suppress(OSError):
                self.process.kill()
            rc: int | None = None
            with contextlib.suppress(Exception):  # TimeoutExpired: stuck in the kernel; then it stays unreaped
                rc = self.process.wait(5)
            logger.warning("warm workers off: spawning a process per command from now on", reason=why,
                           zygote_rc=rc)


class WarmProcess:
    """A forked worker, with what the doors use of `asyncio.subprocess.Process`."""

    def __init__(self, pid: int, status: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 stdin: asyncio.StreamWriter | None, stdout: asyncio.StreamReader | None,
                 stderr: asyncio.StreamReader | None) -> None:
        self.pid, self._status = pid, status
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None

    async def wait(self) -> int:
        """Its exit code (-N for signal N), as the zygote reports it."""
        if self.returncode is not None:
            return self.returncode
        reader, writer = self._status
        line = await reader.readline()
        writer.close()
        if line.startswith(b"status "):
            self.returncode = os.waitstatus_to_exitcode(int(line.split()[1]))
            return self.returncode
        # The zygote died under it: wait for the process itself (the pid is not reaped, so not reused, while
        # the worker lives: init reaps it when it ends); its exit status is lost.
        with contextlib.suppress(ProcessLookupError):
            pidfd = os.pidfd_open(self.pid)
            try:
                await _readable(pidfd)
            finally:
                os.close(pidfd)
        logger.warning("a warm worker's exit status was lost: the zygote died", pid=self.pid)
        self.returncode = 255
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


_running: list[Zygote] = []  # the one zygote of this serve process, if it started one


def install(zygote: Zygote | None) -> None:
    """Make `zygote` the one `exec_worker` uses in this process (None: spawn every worker)."""
    _running[:] = [zygote] if zygote is not None else []


def running() -> Zygote | None:
    return _running[0] if _running else None


async def exec_worker(module: str, env: Mapping[str, str], *, stdin: int, stdout: int, stderr: int,
                      new_session: bool = True) -> Worker:
    """`python -m MODULE` with `env`: a warm child of the zygote if serve runs one, else a new process.

    stdin/stdout/stderr: PIPE, DEVNULL, STDOUT (stderr only) or a descriptor of the caller's (it keeps it).
    Returns an `asyncio.subprocess.Process` or a `WarmProcess`."""
    zygote = running()
    if zygote is not None and not zygote.dead:
        warm = await _fork(zygote, module, env, (stdin, stdout, stderr), new_session=new_session)
        if warm is not None:
            return warm
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, env=dict(env), stdin=stdin, stdout=stdout, stderr=stderr,
        start_new_session=new_session)


async def _fork(zygote: Zygote, module: str, env: Mapping[str, str], how: tuple[int, int, int], *,
                new_session: bool) -> WarmProcess | None:
    theirs: list[int] = []  # the child's ends, closed here once sent
    ours: list[int | None] = [None, None, None]
    try:
        child: list[int] = []
        for i, kind in enumerate(how):
            if kind == PIPE:
                r, w = os.pipe()
                child_end, our_end = (r, w) if i == 0 else (w, r)
                ours[i] = our_end
                theirs.append(child_end)
                child.append(child_end)
            elif kind == DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR)
                theirs.append(fd)
                child.append(fd)
            elif kind == STDOUT and i == 2:
                child.append(child[1])
            else:
                child.append(kind)
        got = await zygote.fork(module, env, (child[0], child[1], child[2]), new_session)
    except BaseException:
        for fd in (*theirs, *(o for o in ours if o is not None)):
            os.close(fd)
        raise
    for fd in theirs:
        os.close(fd)
    if got is None:
        for o in ours:
            if o is not None:
                os.close(o)
        return None
    pid, status, request = got
    loop = asyncio.get_running_loop()
    streams: list[Any] = [None, None, None]
    for i, end in enumerate(ours):
        if end is None:
            continue
        if i == 0:
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.streams.FlowControlMixin(loop=loop), os.fdopen(end, "wb", 0))
            streams[0] = asyncio.StreamWriter(transport, protocol, None, loop)
        else:
            streams[i] = await _reader(loop, end)
    return WarmProcess(pid, (status, request), *streams)


async def _reader(loop: asyncio.AbstractEventLoop, fd: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=2 ** 16, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await done
    finally:
        loop.remove_reader(fd)


# -- the zygote's side ---------------------------------------------------------------------------------
def warm(modules: Sequence[str]) -> None:
    """Import each module and the names in its WARM tuple (what its main() would import lazily), then the
    built-in plugins and theirs (`bus.warm_builtins`)."""
    from pushdock import bus  # noqa: PLC0415 -- start-up: only the zygote warms

    for name in modules:
        module = importlib.import_module(name)
        for extra in getattr(module, "WARM", ()):
            importlib.import_module(extra)
    bus.warm_builtins()


def hazards(control_fd: int) -> list[str]:
    """What a forked child must not inherit and a fresh process would not have: other threads, open sockets."""
    found = [f"thread {t.name}" for t in threading.enumerate() if t is not threading.main_thread()]
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            # 0-2 are replaced in every child (and serve's stderr is a socket under systemd's journal)
            if int(name) not in (0, 1, 2, control_fd) and os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                found.append(f"socket on fd {name}")
    return found


def serve_forks(control: socket.socket) -> None:
    """The zygote's loop: fork on every request, report pids and statuses, until serve closes its end."""
    sel = selectors.EpollSelector()
    sel.register(control, selectors.EVENT_READ)
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, conn)
    while True:
        for key, _ in sel.select():
            if key.fileobj is control:
                try:
                    msg, ancdata, _flags, _addr = control.recvmsg(16, socket.CMSG_SPACE(_FDS * 4))
                except InterruptedError:
                    continue
                if not msg:
                    return  # serve is gone (or stopping): running workers go on without us
                fds = _received(ancdata)
                if len(fds) != _FDS:
                    for fd in fds:
                        os.close(fd)
                    continue
                conn = socket.socket(fileno=fds[0])
                pid = os.fork()
                if pid == 0:
                    os._exit(_child(conn, fds[1:], [control.fileno(), sel.fileno(),
                                                   *children, *(c.fileno() for _, c in children.values())],
                                    session=msg == b"fork 1"))
                for fd in fds[1:]:
                    os.close(fd)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, conn)
                sel.register(pidfd, selectors.EVENT_READ)
            else:
                pidfd = int(key.fd)
                pid, conn = children.pop(pidfd)
                sel.unregister(pidfd)
                _, status = os.waitpid(pid, 0)
                os.close(pidfd)
                _say(conn, f"status {status}\n")
                conn.close()


def _received(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def _say(conn: socket.socket, line: str) -> None:
    with contextlib.suppress(OSError):  # serve gave up on this request: the worker runs on regardless
        conn.sendall(line.encode())


def _child(conn: socket.socket, stdio: list[int], inherited: list[int], *, session: bool) -> int:
    """In the forked child: become the worker `python -m MODULE` would have been, run it, return its status."""
    try:
        if session:
            os.setsid()
        conn.sendall(f"pid {os.getpid()}\n".encode())
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        with conn.makefile("rb") as f:
            request = json.loads(f.read())
        conn.close()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)  # dup2 makes 0, 1, 2 inheritable, as in a spawned process
        for fd in set(stdio):
            if fd > 2:
                os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        _fresh_stdio()
        module = importlib.import_module(request["module"])
        sys.argv = [str(getattr(module, "__file__", request["module"]))]
    except BaseException as e:  # nothing ran: say why where the worker's stderr goes
        with contextlib.suppress(OSError):
            os.write(2, f"fatal: the worker did not start: {e!r}\n".encode())
        return 1
    return _run_main(module)


def _run_main(module: Any) -> int:
    """`main()` and an interpreter's exit: SystemExit's code, threads joined, atexit run, stdio flushed."""
    try:
        rc = module.main()
    except SystemExit as e:
        rc = e.code
    except BaseException:
        import traceback  # noqa: PLC0415 -- only on a crash

        traceback.print_exc()
        rc = 1
    if rc is None:
        rc = 0
    elif not isinstance(rc, int):
        sys.stderr.write(f"{rc}\n")
        rc = 1
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]  # non-daemon threads end first, as at exit
    with contextlib.suppress(Exception):
        import atexit  # noqa: PLC0415 -- only in the child, at its end

        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return rc & 0xFF


def _fresh_stdio() -> None:
    """sys.stdin/stdout/stderr on the new 0, 1, 2, buffered as a starting interpreter buffers them."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old: TextIO = getattr(sys, name)
        line_buffered = fd == 2 or (fd == 1 and os.isatty(1))
        stream = open(fd, "r" if fd == 0 else "w", buffering=1 if line_buffered else -1,
                      encoding=old.encoding, errors=old.errors, closefd=False)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def main() -> int:
    control_fd, modules = int(sys.argv[1]), sys.argv[2:]
    control = socket.socket(fileno=control_fd)
    try:
        warm(modules)
    except Exception as e:
        sys.stderr.write(f"error: warm workers: cannot import the workers' modules: {e}\n")
        return 1
    found = hazards(control_fd)
    if found:  # a fork would hand these down: refuse, serve spawns instead
        sys.stderr.write(f"error: warm workers: not forking with {', '.join(found)} open\n")
        return 1
    import gc  # noqa: PLC0415 -- only here

    gc.freeze()  # what is imported now stays shared with every child: the collector never touches (copies) it
    serve_forks(control)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

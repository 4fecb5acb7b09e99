"""Ports another program holds (issue 13 item 2): refused for a change, parked at a start, never committed.

The engine's `RecordingProxy` (tests/unit/proxies/test_engine.py) records what it is asked to serve; the
"other program" and "our proxy" are real listening sockets of this process.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from proxies import listen
from proxies.model import Listener
from pushdock.context import Context
from pushdock.errors import Conflict, PushdockError
from tests.harness import free_port
from tests.unit.proxies.test_engine import RecordingProxy, up


@contextmanager
def listening(port: int, *, reuseport: bool = False) -> Iterator[socket.socket]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind(("0.0.0.0", port))
        s.listen(4)
        yield s
    finally:
        s.close()


def route_ports(ctx: Context, app: str, *ports: int) -> None:
    ctx.state.set_json("ports", app, "map", [f"http:{p}:5000" for p in ports])


def test_taken_tells_free_ours_and_others_apart() -> None:
    free, ours, theirs = free_port(), free_port(), free_port()
    with listening(ours, reuseport=True), listening(theirs):
        assert listen.taken([free, ours], lambda: [os.getpid()]) == {}
        assert listen.taken([free, ours, theirs], lambda: [os.getpid() + 10**7]) == {
            ours: "in use by another program", theirs: "in use by another program"}


def test_a_change_to_a_port_another_program_holds_is_refused(ctx: Context) -> None:
    px = RecordingProxy()
    ctx.state.create_app("web")
    px.apply(ctx, "web", ["web.test"], [up(1)])
    before = px.routes(ctx)
    port = free_port()
    with listening(port):
        route_ports(ctx, "web", ctx.settings.proxy_port, port)
        with pytest.raises(Conflict, match=f"port {port} is in use by another program"):
            px.apply(ctx, "web", ["web.test"], [up(1)])
        with pytest.raises(Conflict, match=f"port {port} is in use by another program"):
            px.check_ports(ctx, [port])
    assert px.routes(ctx) == before and px.live == before


def test_a_port_taken_while_the_proxy_was_down_is_parked_until_free(ctx: Context) -> None:
    px = RecordingProxy()
    port = free_port()
    route_ports(ctx, "web", ctx.settings.proxy_port, port)
    px.apply(ctx, "web", ["web.test"], [up(1)])
    px.apply(ctx, "api", ["api.test"], [up(2)])
    with listening(port):
        px.ensure_running(ctx)  # a start: nothing changed, but the port is taken meanwhile
        assert px.parked(ctx) == {"web": [port]}
        assert px.live["web"].listeners == (Listener("http", ctx.settings.proxy_port),)
        px.apply(ctx, "api", ["api.test"], [up(3)])  # another app's change is not refused for it
        assert px.live["api"].upstreams == (up(3),) and px.parked(ctx) == {"web": [port]}
    px.apply(ctx, "api", ["api.test"], [up(4)])  # the next commit once it is free serves it again
    assert px.commits[-1] == {"api", "web"}
    assert px.parked(ctx) == {} and Listener("http", port) in px.live["web"].listeners


def test_a_start_that_loses_a_port_after_the_check_checks_again(ctx: Context) -> None:
    """The race cannot be timed against a real proxy: this one's start takes the port for another program
    right after the check and fails as a proxy that cannot bind would; the second try parks the port."""
    port = free_port()
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    route_ports(ctx, "web", ctx.settings.proxy_port, port)

    class Racing(RecordingProxy):
        race = False

        def _commit(self, ctx: Context, old: dict, new: dict, changed: set[str]) -> None:  # type: ignore[type-arg]
            if self.race:
                self.race = False
                other.bind(("0.0.0.0", port))
                other.listen(4)
                raise PushdockError(f"bind() to 0.0.0.0:{port} failed (98: Address already in use)")
            super()._commit(ctx, old, new, changed)

    px = Racing()
    try:
        px.apply(ctx, "web", ["web.test"], [up(1)])
        px.race = True
        px.ensure_running(ctx)  # the proxy was down: a start
        assert px.parked(ctx) == {"web": [port]}
        assert px.live["web"].listeners == (Listener("http", ctx.settings.proxy_port),)
    finally:
        other.close()


def test_connections_queued_on_a_closing_listener_go_to_the_other_one() -> None:
    """Ten clients connect while only the first socket of a SO_REUSEPORT group listens; a second joins and the
    first closes without accepting them (a proxy stopping as another takes over). With migration on, the
    kernel hands all ten to the second socket; without it, each would be reset."""
    assert listen.migrate_on_close()
    first = socket.socket()
    first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    first.listen(64)
    port = first.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
    with socket.socket() as second:
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        second.bind(("127.0.0.1", port))
        second.listen(64)
        for i, c in enumerate(clients):
            c.sendall(f"hello {i}\n".encode())
        first.close()
        second.settimeout(5)
        got = set()
        for _ in clients:
            conn, _addr = second.accept()
            with conn:
                got.add(conn.recv(64).decode())
        assert got == {f"hello {i}\n" for i in range(10)}
    for c in clients:
        c.close()


def test_a_switch_hands_new_connections_to_the_new_proxy_before_the_old_one_stops() -> None:
    """The "old proxy" is a socket of this process, the "new proxy" a child process listening on the same port
    (SO_REUSEPORT). After `steer.hand_over` every new connection goes to the child: the old socket's queue stays
    empty, so the old proxy has nothing half-accepted to close when it stops."""
    import subprocess
    import sys

    from proxies import steer

    old = socket.socket()
    old.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    old.bind(("0.0.0.0", 0))
    old.listen(64)
    port = old.getsockname()[1]
    code = (f"import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); "
            f"s.bind(('0.0.0.0', {port})); s.listen(64); print('up', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        steered = steer.hand_over([os.getpid()], [child.pid])
        assert steered == [(child.pid, port)]
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        old.setblocking(False)
        with pytest.raises(BlockingIOError):
            old.accept()
        for pid, p in steered:
            steer.release(pid, p)
        for c in clients:
            c.close()
    finally:
        child.kill()
        child.wait()
        old.close()


def test_a_hold_keeps_new_connections_off_a_socket_joining_the_group() -> None:
    """The "old proxy" is a socket of this process; a child process (the "new proxy" starting) joins its
    SO_REUSEPORT group after `steer.hold`, which finds the old socket's holder by itself (no hint). Every new
    connection goes to the old socket while held (the kernel's hash alone would give the child about half);
    after `release` the child gets its share again."""
    import subprocess
    import sys

    from proxies import steer

    old = socket.socket()
    old.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    old.bind(("0.0.0.0", 0))
    old.listen(128)
    port = old.getsockname()[1]
    held = steer.hold([port], [])
    assert held == [(os.getpid(), port)]
    code = (f"import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); "
            f"s.bind(('0.0.0.0', {port})); s.listen(128); print('up', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        clients += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        old.setblocking(False)
        accepted = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                old.accept()[0].close()
                accepted += 1
        assert accepted == 40
        for pid, p in held:
            steer.release(pid, p)
        clients += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        with contextlib.suppress(BlockingIOError):
            while True:
                old.accept()[0].close()
                accepted += 1
        assert 40 < accepted < 80, "released: the kernel's hash spreads them again"
    finally:
        for c in clients:
            c.close()
        child.kill()
        child.wait()
        old.close()

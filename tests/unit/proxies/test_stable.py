"""Stable upstream addresses (proxies/stable.py) for real: the kernel's nat table, real sockets, real `ss -K`.

Two in-process HTTP backends stand for the old and the new container; the test's own HTTP connections stand for
the proxy's upstream connections. Needs root, nft or iptables, and ss (skipped otherwise). Each switch test runs
on both ways of switching: the nftables map (nft here) and the iptables chain pushdock falls back to without nft
(`stable._nft` patched to say no nft: the one thing faked, since nft is installed).
"""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxies import stable
from proxies.model import Route
from pushdock.routing import Upstream

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("iptables") or not shutil.which("ss"),
                                reason="needs root, iptables and ss")
HAVE_NFT = shutil.which("nft") is not None


class _Server(http.server.ThreadingHTTPServer):
    """A connection the drain resets (by design: an idle pooled one) is no error of the server's: not printed."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class Backend:
    """An HTTP/1.1 server answering its name; `/slow` answers after `release` is set."""

    def __init__(self, name: str) -> None:
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/slow":
                    outer.release.wait(10)
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.upstream = Upstream("127.0.0.1", self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["nft", "iptables"])
def st(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[stable.Stable]:
    if request.param == "nft" and not HAVE_NFT:
        pytest.skip("nft is not installed")  # scripts/setup.sh installs it: CI always has it
    monkeypatch.setattr(stable, "_nft", lambda: request.param == "nft")
    s = stable.Stable(tmp_path / "nginx")
    s.root.mkdir()
    yield s
    s.remove()


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    old, new = Backend("old"), Backend("new")
    yield old, new
    old.close()
    new.close()


def route(app: str, *upstreams: Upstream) -> Route:
    return Route(app=app, domains=(f"{app}.localhost",), upstreams=tuple(upstreams), listeners=())


def get(conn: http.client.HTTPConnection, path: str = "/") -> str:
    conn.request("GET", path)
    return conn.getresponse().read().decode()


def test_switch_sends_new_connections_to_the_new_upstream_and_drains_the_old(st: stable.Stable, backends) -> None:
    old, new = backends
    view, rules = st.view({"web": route("web", old.upstream)})
    [addr] = view["web"].upstreams
    assert addr.host == st.address and rules == {addr.port: old.upstream}
    st.install(rules, force=True)
    pooled = http.client.HTTPConnection(addr.host, addr.port, timeout=5)
    assert get(pooled) == "old"  # an idle keep-alive connection, as a proxy pools them
    busy = http.client.HTTPConnection(addr.host, addr.port, timeout=15)
    busy.request("GET", "/slow")  # a request in flight at the switch

    view2, rules2 = st.view({"web": route("web", new.upstream)})
    assert view2 == view, "the proxy is told nothing new"
    st.install(rules2)
    fresh = http.client.HTTPConnection(addr.host, addr.port, timeout=5)
    assert get(fresh) == "new"
    done = threading.Event()
    threading.Thread(target=lambda: (st.drain({addr.port}, timeout=20), done.set()), daemon=True).start()
    time.sleep(0.5)
    assert not done.is_set(), "the drain waits for the request in flight"
    old.release.set()
    assert busy.getresponse().read() == b"old", "the request in flight finished on the old upstream"
    assert done.wait(10)
    with pytest.raises((OSError, http.client.HTTPException)):
        get(pooled)  # the idle pooled connection was closed: a proxy opens a new one, to the new upstream
    assert get(http.client.HTTPConnection(addr.host, addr.port, timeout=5)) == "new"


def test_only_loopback_upstreams_within_the_slots_are_steered(st: stable.Stable) -> None:
    lo = Upstream("127.0.0.1", 4000)
    table = {
        "a": route("a", lo),
        "b": route("b", Upstream("172.17.0.5", 5000)),
        "c": route("c", *(Upstream("127.0.0.1", 5000 + i) for i in range(stable.SLOTS + 1))),
        "d": route("d"),
    }
    view, rules = st.view(table)
    assert view["a"].upstreams[0].host == st.address
    assert {app: view[app] for app in "bcd"} == {app: table[app] for app in "bcd"}
    assert list(rules.values()) == [lo]
    again, _ = st.view(table)
    assert again == view, "an app keeps its slot"
    st.forget({"a"})
    assert st._slots() == {}


def _kernel(st: stable.Stable) -> str:
    """What the kernel holds for this data dir: its nft table, or its iptables chain ("" if none)."""
    if stable._nft():
        res = subprocess.run(["nft", "list", "table", "ip", st.nat.table], capture_output=True, text=True)
        return res.stdout if res.returncode == 0 else ""
    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return "\n".join(line for line in rules.splitlines() if st.chain in line)


def test_remove_deletes_the_table_or_the_chain_and_its_jump(st: stable.Stable) -> None:
    st.install({stable.PORT_BASE: Upstream("127.0.0.1", 9)}, force=True)
    assert "127.0.0.1" in _kernel(st)
    st.remove()
    assert _kernel(st) == ""
    assert st.installed() is None
    with socket.socket() as s:  # nothing is steered any more: the stable address is a plain loopback address
        s.settimeout(2)
        assert s.connect_ex((st.address, stable.PORT_BASE)) != 0


def test_a_switch_changes_only_what_changed_and_apps_come_and_go(st: stable.Stable, backends) -> None:
    old, new = backends
    a, b, c = stable.PORT_BASE, stable.PORT_BASE + stable.SLOTS, stable.PORT_BASE + 2 * stable.SLOTS
    st.install({a: old.upstream, b: old.upstream}, force=True)
    st.install({a: new.upstream, b: old.upstream, c: new.upstream})  # a redeploy of one app, another app added
    assert st.installed() == {a: new.upstream, b: old.upstream, c: new.upstream}
    for port, want in ((a, "new"), (b, "old"), (c, "new")):
        assert get(http.client.HTTPConnection(st.address, port, timeout=5)) == want
    st.install({a: new.upstream})  # apps removed
    assert get(http.client.HTTPConnection(st.address, a, timeout=5)) == "new"
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((st.address, b)) != 0


@pytest.mark.skipif(not HAVE_NFT, reason="nft is not installed")
def test_a_map_not_as_the_rules_file_says_is_written_whole(tmp_path: Path, backends) -> None:
    """The kernel lost the table (a reboot, someone's `nft flush ruleset`) while the rules file stayed: the next
    switch fails in the kernel and writes the table whole instead of leaving the old target in place."""
    old, new = backends
    st = stable.Stable(tmp_path / "caddy")
    st.root.mkdir()
    try:
        port = stable.PORT_BASE
        st.install({port: old.upstream}, force=True)
        subprocess.run(["nft", "delete", "table", "ip", st.nat.table], check=True)
        st.install({port: new.upstream})
        assert get(http.client.HTTPConnection(st.address, port, timeout=5)) == "new"
    finally:
        st.remove()


@pytest.mark.skipif(not HAVE_NFT, reason="nft is not installed")
def test_an_older_iptables_chain_of_the_data_dir_is_removed_when_the_map_is_written(tmp_path: Path, backends,
                                                                                      monkeypatch) -> None:
    """A data dir switched by iptables before nft was here: its chain would compete with the map (both DNAT)."""
    old, new = backends
    st = stable.Stable(tmp_path / "nginx")
    st.root.mkdir()
    port = stable.PORT_BASE
    try:
        monkeypatch.setattr(stable, "_nft", lambda: False)
        st.install({port: old.upstream}, force=True)
        monkeypatch.setattr(stable, "_nft", lambda: True)
        st.install({port: new.upstream}, force=True)
        chains = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        assert st.chain not in chains
        assert get(http.client.HTTPConnection(st.address, port, timeout=5)) == "new"
    finally:
        st.remove()


@pytest.mark.skipif(not HAVE_NFT, reason="nft is not installed")
def test_a_forked_child_switches_on_a_socket_of_its_own(tmp_path: Path, backends) -> None:
    """serve's workers fork: a child must not read the parent's netlink replies, nor the parent the child's."""
    old, new = backends
    st = stable.Stable(tmp_path / "nginx")
    st.root.mkdir()
    port = stable.PORT_BASE
    try:
        st.install({port: old.upstream}, force=True)
        st.install({port: new.upstream})  # the parent's socket is open now
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                st.install({port: old.upstream})
                code = 0
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        st.install({port: new.upstream})  # the parent's own socket still answers it
        assert get(http.client.HTTPConnection(st.address, port, timeout=5)) == "new"
    finally:
        st.remove()

"""Stable upstream addresses (proxies/stable.py) for real: the kernel's nat table, real sockets, real `ss -K`.

Two in-process HTTP backends stand for the old and the new container; the test's own HTTP connections stand for
the proxy's upstream connections. Needs root, iptables and ss (skipped otherwise).
"""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import socket
import subprocess
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.upstream = Upstream("127.0.0.1", self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def st(tmp_path: Path) -> Iterator[stable.Stable]:
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


def test_remove_deletes_the_chain_and_its_jump(st: stable.Stable) -> None:
    st.install({stable.PORT_BASE: Upstream("127.0.0.1", 9)}, force=True)
    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert st.chain in rules
    st.remove()
    rules = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert st.chain not in rules
    assert st.installed() is None
    with socket.socket() as s:  # nothing is steered any more: the stable address is a plain loopback address
        s.settimeout(2)
        assert s.connect_ex((st.address, stable.PORT_BASE)) != 0

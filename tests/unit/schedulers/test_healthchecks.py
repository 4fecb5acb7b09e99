"""app.json healthchecks against a real local HTTP server; the container side is a small fake (its
state and logs), the real container path is in tests/e2e/test_releases.py. Also `run`'s command choice
and the restart policy."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pushdock.checks import Healthcheck
from pushdock.routing import Upstream
from pushdock.state import Release
from schedulers import engine as eng
from schedulers.docker_local.run import command_of
from schedulers.engine import Aborted, NotReady, Slot, Started
from schedulers.healthchecks import http_check, run_all, validate


class Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        Handler.hits.append(self.path)
        status, body = {"/ok": (200, b"all ok"), "/redirect": (302, b""), "/boom": (500, b"boom")}.get(
            self.path, (404, b"nope"))
        if self.path == "/slow":
            time.sleep(1.5)
            status, body = 200, b"late"
        if self.path == "/third" and Handler.hits.count("/third") >= 3:
            status, body = 200, b"ready now"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the /slow answer goes to a client that gave up: expected


@pytest.fixture(scope="module")
def upstream():
    srv = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield Upstream("127.0.0.1", srv.server_address[1])
    srv.shutdown()
    srv.server_close()


class FakeContainer:
    """What the checks read of a container: a running state and its last log lines."""

    def __init__(self, status: str = "running") -> None:
        self.attrs = {"State": {"Status": status, "ExitCode": 1}, "RestartCount": 0}
        self.status = status

    def reload(self) -> None:
        pass

    def logs(self, tail: int = 5, stdout: bool = True, stderr: bool = True) -> bytes:
        return b"line one\nline two\n" if stderr else b""


def started(upstream: Upstream, container: FakeContainer | None = None) -> Started:
    return Started(Slot("web", 1), container or FakeContainer(), upstream)


def test_http_check_answers(upstream) -> None:
    assert http_check(upstream, "/ok", "ok", 2) == ""
    assert http_check(upstream, "/redirect", None, 2) == ""
    assert http_check(upstream, "/missing", None, 2) == "GET /missing answered HTTP 404"
    assert http_check(upstream, "/boom", None, 2) == "GET /boom answered HTTP 500"
    assert http_check(upstream, "/ok", "ready", 2) == "GET /ok answered without 'ready'"
    assert http_check(upstream, "/slow", None, 0.5) == "no answer within 0.5s"
    assert http_check(Upstream("127.0.0.1", 1), "/", None, 1).startswith("GET /: ")


def test_checks_retry_until_they_pass(upstream) -> None:
    Handler.hits.clear()
    h = Healthcheck(process="web", name="third", path="/third", attempts=3, wait=0.05)
    assert run_all(started(upstream), [h], threading.Event()) == ["check third passed"]
    assert Handler.hits.count("/third") == 3


def test_a_failing_check_fails_the_instance_with_its_logs(upstream) -> None:
    h = Healthcheck(process="web", name="health", path="/missing", attempts=2, wait=0)
    with pytest.raises(NotReady) as info:
        run_all(started(upstream), [h], threading.Event())
    assert info.value.reason == "web.1 failed check health: GET /missing answered HTTP 404 (2 attempts)"
    assert info.value.lines == ["line one", "line two"]


def test_a_warn_check_only_warns(upstream) -> None:
    h = Healthcheck(process="web", name="soft", path="/missing", attempts=1, warn=True)
    [note] = run_all(started(upstream), [h], threading.Event())
    assert note.startswith("warning: web.1 failed check soft: GET /missing answered HTTP 404")


def test_an_instance_that_died_stops_the_checks(upstream) -> None:
    h = Healthcheck(process="web", name="health", path="/missing", attempts=5, wait=10)
    t0 = time.monotonic()
    with pytest.raises(NotReady, match=r"web\.1 exited with status 1"):
        run_all(started(upstream, FakeContainer("exited")), [h], threading.Event())
    assert time.monotonic() - t0 < 2


def test_abort_ends_the_wait(upstream) -> None:
    abort = threading.Event()
    h = Healthcheck(process="web", name="later", path="/ok", initial_delay=30)
    threading.Timer(0.2, abort.set).start()
    with pytest.raises(Aborted):
        run_all(started(upstream), [h], abort)


def rel(**kw) -> Release:
    base = {"app": "demo", "number": 3, "image": "img", "env": {}, "processes": {"web": "", "worker": "celery"},
            "formation": {"web": 1}}
    return Release(**(base | kw))


def test_validate_refuses_a_check_on_another_port() -> None:
    good = {"web": [Healthcheck(process="web", name="h", path="/", port=5000).to_dict()]}
    validate(rel(checks=good))
    bad = {"web": [Healthcheck(process="web", name="h", path="/", port=8080).to_dict()]}
    with pytest.raises(Exception, match="on port 8080, but the web process listens on 5000"):
        validate(rel(checks=bad))


@pytest.mark.parametrize(("argv", "command"), [
    (["env"], ["env"]),
    (["python3", "-c", "print(1)"], ["python3", "-c", "print(1)"]),
    (["echo $HOME"], ["/bin/sh", "-c", "exec echo $HOME"]),
    (["worker"], ["/bin/sh", "-c", "exec celery"]),
    (["web"], None),  # the image's own CMD
])
def test_run_command(argv: list[str], command: list[str] | None) -> None:
    assert command_of(rel(), argv) == command


@pytest.mark.parametrize(("stored", "policy"), [
    (None, {"Name": "unless-stopped"}), ("always", {"Name": "always"}), ("no", {"Name": "no"}),
    ("on-failure:5", {"Name": "on-failure", "MaximumRetryCount": 5}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}), ("bogus", {"Name": "unless-stopped"}),
])
def test_restart_policy(ctx, stored: str | None, policy: dict) -> None:
    ctx.state.create_app("demo")
    if stored:
        ctx.state.set("ps", "demo", "restart-policy", stored)
    assert eng.restart_policy(ctx, "demo") == policy


def test_listening_ports_come_from_proc_net_tcp() -> None:
    from schedulers.listening import parse_proc_net_tcp

    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
        "   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 0\n"
        "   1: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0\n"
        "   2: 0100007F:1388 00000000:0000 0A 0\n"
        "   3: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 0\n"
        "garbage line\n"
    )
    # LISTEN only (8080 is an established connection); 5000 and 5001 are bound to loopback only
    assert parse_proc_net_tcp(text) == {3000: False, 8000: False, 5000: True, 5001: True}

"""scheduler:*, registry:*, swarm:* through the real command edge, and the swarm scheduler against an
engine whose swarm mode is off.

That engine is a fake: a few Docker Engine API routes served on a unix socket (DOCKER_HOST points the
real SDK at it, in a subprocess), because the real engine here may be in swarm mode for other tests
and turning it off would break them.
"""

from __future__ import annotations

import io
import json
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

import schedulers.plugin
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.settings import Settings
from pushdock.state import GLOBAL, Identity, Release
from schedulers.swarm import settings as props

ROOT = Path(__file__).resolve().parents[3]
APP = "shop"


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    settings = Settings(data_dir=tmp_path / "data")
    bus = Bus(settings.data_dir / "plugins", extra_plugins=(schedulers.plugin,), entry_points=False)
    return Context(settings=settings, bus_override=bus)


@pytest.fixture
def run(ctx: Context):
    def _run(*argv: str, identity: Identity | None = None) -> tuple[int, str, str]:
        if identity is not None:
            ctx.identity = identity
        out, err = io.StringIO(), io.StringIO()
        rc = dispatch(list(argv), ctx, out, err)
        return rc, out.getvalue(), err.getvalue()

    return _run


def test_scheduler_set_and_report_for_an_app_not_deployed_yet(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    assert run("scheduler:set", APP, "selected", "swarm") == (
        0, "-----> shop uses the swarm scheduler (from its next deploy)\n", "")
    assert ctx.scheduler(APP).name == "swarm"
    assert run("scheduler:set", APP, "routing-mesh", "off")[0] == 0
    assert run("scheduler:set", APP, "max-per-node", "2")[0] == 0
    rc, out, _ = run("scheduler:report", APP, "--format", "json")
    report = json.loads(out)
    assert (rc, report["selected"], report["selected from"]) == (0, "swarm", "app")
    assert report["routing mesh"] == "off (off)" and report["max per node"] == "2"
    assert run("scheduler:set", APP, "selected")[1] == "-----> shop uses the docker-local scheduler (from its next deploy)\n"
    assert ctx.state.get("scheduler", APP, "selected") is None


def test_scheduler_set_rejects_bad_input_and_changes_nothing(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    cases = {
        ("selected", "nomad"): "error: unknown scheduler 'nomad' (known: docker-local, swarm)\n",
        ("routing-mesh", "maybe"): "error: routing-mesh must be one of auto, on, off, not 'maybe'\n",
        ("max-per-node", "0"): "error: max-per-node must be a number from 1 to 50, not '0'\n",
        ("max-per-node", "51"): "error: max-per-node must be a number from 1 to 50, not '51'\n",
        ("replicas", "3"): "error: unknown scheduler property 'replicas' (known: selected, routing-mesh, max-per-node)\n",
    }
    for (key, value), expected in cases.items():
        assert run("scheduler:set", APP, key, value) == (2, "", expected)
    assert not (ctx.state.root / "data" / "scheduler").exists()
    assert run("scheduler:set", "nope", "selected", "swarm")[2] == "error: app nope does not exist\n"


def test_global_default_pins_the_apps_that_run_where_they_run(ctx: Context, run) -> None:
    for app in ("running", "new"):
        ctx.state.create_app(app)
    ctx.state.save_release(Release(app="running", number=1, image="i", env={}, processes={"web": ""},
                                   formation={"web": 1}))
    ctx.state.promote_release(ctx.state.get_release("running", 1))
    rc, out, _ = run("scheduler:set", "--global", "selected", "swarm")
    assert rc == 0 and "1 running app(s) stay where they run: running" in out
    assert ctx.scheduler("running").name == "docker-local"  # pinned: its containers run there
    assert ctx.scheduler("new").name == "swarm"
    assert ctx.scheduler(None).name == "swarm"
    deployer = Identity(name="dev", role="deployer", apps=("new",), door="ssh")
    rc, _, err = run("scheduler:set", "--global", "selected", "docker-local", identity=deployer)
    assert rc == 13 and err == "error: dev (deployer) may not run this command: admin only\n"


def test_registry_set_and_report(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    assert run("registry:set", "--global", "server", "registry.example.com:5000/team")[0] == 0
    assert props.registry_server(ctx, APP) == "registry.example.com:5000/team"
    assert run("registry:set", APP, "server", "ghcr.io")[0] == 0
    rc, out, _ = run("registry:report", APP, "--format", "json")
    assert json.loads(out) == {"server": "ghcr.io", "global server": "registry.example.com:5000/team",
                               "image": "ghcr.io/pushdock/shop:vN"}
    rc, _, err = run("registry:set", "--global", "server", "not a host")
    assert rc == 2 and err.startswith("error: registry server must look like HOST[:PORT][/PATH]")
    assert run("registry:set", "--global", "server")[0] == 0
    assert ctx.state.get("registry", GLOBAL, "server") is None


def test_node_settings_are_validated(ctx: Context) -> None:
    props.set_node(ctx, "n1", "address", "10.0.0.5")
    props.set_node(ctx, "n1", "engine", "tcp://10.0.0.5:2376")
    assert props.node_settings(ctx) == {"n1": {"address": "10.0.0.5", "engine": "tcp://10.0.0.5:2376"}}
    with pytest.raises(Exception, match="engine must be a Docker engine URL"):
        props.set_node(ctx, "n1", "engine", "10.0.0.5")
    props.set_node(ctx, "n1", "address", "")
    props.set_node(ctx, "n1", "engine", "")
    assert props.node_settings(ctx) == {}


# -- an engine whose swarm mode is off ---------------------------------------------------------------
class _Engine(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    swarm_state = "inactive"

    def _send(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/version"):
            self._send({"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"})
        elif path.endswith("/swarm"):
            self._send({"ID": "fakeswarm", "Spec": {}})
        elif path.endswith("/info"):
            self._send({"Swarm": {"LocalNodeState": type(self).swarm_state, "NodeID": "", "ControlAvailable": False}})
        else:
            self._send({"message": "not in this fake"}, 404)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].endswith("/swarm/init"):
            type(self).init_body = json.loads(body)
            self._send("fakenode0000000000000000000")
        else:
            self._send({"message": "not in this fake"}, 404)

    def address_string(self) -> str:
        return "fake"

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine(tmp_path: Path):
    path = tmp_path / "docker.sock"
    server = _UnixServer(str(path), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"unix://{path}"
    server.shutdown()
    server.server_close()


def _pushdock(tmp_path: Path, engine: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": engine, "PUSHDOCK_DATA_DIR": str(tmp_path / "cli"),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pushdock.cli", *argv], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_swarm_not_initialised_is_one_line_saying_what_to_run(tmp_path: Path, fake_engine: str) -> None:
    code = (
        "from pushdock.context import Context; from pushdock.settings import Settings; "
        "from pushdock.state import Release; from pushdock.progress import NULL; "
        "from schedulers.swarm.scheduler import SwarmScheduler; import sys\n"
        f"ctx = Context(settings=Settings(data_dir={str(tmp_path / 'd')!r}))\n"
        "r = Release(app='a', number=1, image='i', env={}, processes={'web': ''}, formation={'web': 1})\n"
        "try:\n    SwarmScheduler().deploy(ctx, r, lambda u: None, NULL)\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
        "print(SwarmScheduler().instances(ctx, 'a'))\n"
    )
    cp = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": fake_engine,
                        "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert cp.stdout.splitlines() == [
        "DeployFailed swarm mode is not active on this Docker engine: run `pushdock swarm:init` first", "[]"], cp.stderr
    cp = _pushdock(tmp_path, fake_engine, "swarm:set", "vm", "address", "10.0.0.1")
    assert (cp.returncode, cp.stderr) == (
        1, "error: swarm mode is not active on this Docker engine: run `pushdock swarm:init` first\n")
    cp = _pushdock(tmp_path, fake_engine, "swarm:report")
    assert cp.returncode == 0 and "state:" in cp.stdout and "run `pushdock swarm:init`" in cp.stdout


def test_swarm_init_uses_this_machines_defaults(tmp_path: Path, fake_engine: str) -> None:
    cp = _pushdock(tmp_path, fake_engine, "swarm:init")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("-----> swarm mode is on: this node (fakenode0000) is the manager, listening on "
                                "127.0.0.1:2377")
    assert (_Engine.init_body["AdvertiseAddr"], _Engine.init_body["ListenAddr"]) == ("127.0.0.1", "127.0.0.1:2377")
    assert _Engine.init_body["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 5_000_000_000
    cp = _pushdock(tmp_path, fake_engine, "swarm:init", "--heartbeat", "1")
    assert cp.returncode == 0 and _Engine.init_body["Spec"]["Dispatcher"]["HeartbeatPeriod"] == 1_000_000_000
    cp = _pushdock(tmp_path, fake_engine, "swarm:init", "--listen-addr", "nope")
    assert (cp.returncode, cp.stderr) == (2, "error: --listen-addr must be ADDRESS:PORT, not 'nope'\n")

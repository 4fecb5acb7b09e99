"""Plugins and log shipping through the real SSH door (a real `pushdock serve`, git and ssh clients, Docker, nginx).

A script plugin installed with plugin:install from a local git repository runs on a real push (post-deploy
appends a line to a file), does not run once disabled, and runs again by hand with plugin:trigger; a plugin
put in place by hand with a broken plugin.toml is reported by serve's log and plugin:list, and serve keeps
serving. `logs:set APP vector-sink syslog://127.0.0.1:PORT` restarts the app and a line it prints arrives at a
UDP syslog listener of the test (the engine's logging driver runs in dockerd on the host, so the host's
loopback is reachable), while `logs APP` still shows it (the engine's dual logging). One push for the module.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.harness import Server, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("plugins")
    srv = Server(base)
    broken = srv.data / "plugins" / "broken"  # placed by hand, before serve starts
    broken.mkdir(parents=True)
    (broken / "plugin.toml").write_text("[plugin]\nversion = 1\n")
    srv.start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def deployed(server: Server, tmp_path_factory):
    """(app, the file the plugin writes): the notify plugin installed, then the app's first push."""
    base = tmp_path_factory.mktemp("notify")
    out = base / "deploys.log"
    repo = base / "repo"
    repo.mkdir()
    script = repo / "post-deploy"
    script.write_text(f'#!/bin/sh\necho "$1 v$2" >> {out}\necho "notified $1"\n')
    script.chmod(0o755)
    (repo / "plugin.toml").write_text('[plugin]\nversion = "1.0.0"\ndescription = "records deploys"\n')
    server.git("init", "-q", "-b", "main", cwd=repo, check=True)
    server.commit(repo, "notify plugin")
    installed = server.ssh("plugin:install", str(repo), "--name", "notify")
    assert "Installed script plugin notify 1.0.0" in installed.stdout and installed.stderr == ""

    app = unique("plug")
    work = server.app_repo(app, body="plugged")
    cp = server.push(work, app)
    assert cp.returncode == 0, cp.stderr
    return app, out


def plugins(server: Server) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(server.ssh("plugin:list", "--format", "json").stdout)}


def test_script_plugin_runs_on_push_and_stops_when_disabled(server, deployed) -> None:
    app, out = deployed
    assert out.read_text().splitlines() == [f"{app} v1"]
    listed = plugins(server)
    assert listed["notify"]["loaded"] and listed["notify"]["triggers"] == ["post-deploy"]
    assert listed["notify"]["commit"] and listed["notify"]["enabled"]

    server.ssh("plugin:disable", "notify")
    server.ssh("config:set", app, "AFTER=disable")  # a new release (v2): post-deploy fires, the plugin does not run
    assert out.read_text().splitlines() == [f"{app} v1"]
    assert plugins(server)["notify"]["enabled"] is False

    server.ssh("plugin:enable", "notify")
    by_hand = server.ssh("plugin:trigger", "post-deploy", app, "9", "pushdock/x:v9")
    assert by_hand.stdout.strip() == f"notified {app}" and by_hand.stderr == ""
    assert out.read_text().splitlines() == [f"{app} v1", f"{app} v9"]

    again = server.ssh("plugin:install", str(out.parent / "repo"), "--name", "notify", check=False)
    assert (again.returncode, again.stderr.splitlines()[0]) == (1, "error: plugin notify is already installed")
    server.ssh("plugin:uninstall", "notify")
    assert "notify" not in plugins(server)


def test_a_plugin_that_does_not_load_is_reported_and_serve_stays_up(server, deployed) -> None:
    broken = plugins(server)["broken"]
    assert broken["loaded"] is False and broken["error"] == "plugin.toml: plugin.version must be a string"
    log = (server.data / "logs" / "pushdock.log").read_text()
    assert "plugin failed to load" in log and "plugin.version must be a string" in log
    assert server.health()["status"] == "ok" and server.proc.poll() is None
    assert "error: plugin.toml: plugin.version must be a string" in server.ssh("plugin:list").stdout

    bad = server.ssh("plugin:install", str(server.data / "plugins" / "broken"), "--name", "broken2", check=False)
    assert bad.returncode == 2
    assert bad.stderr == "error: plugin broken2 does not load: plugin.toml: plugin.version must be a string\n"
    assert "broken2" not in plugins(server) and not list((server.data / "plugins").glob(".staging*"))


def test_logs_ship_to_a_syslog_sink(server, deployed) -> None:
    app, _ = deployed
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(1)
    port = sink.getsockname()[1]
    try:
        cp = server.ssh("logs:set", app, "vector-sink", f"syslog://127.0.0.1:{port}")
        assert cp.stderr == "" and "Set" in cp.stdout
        report = json.loads(server.ssh("logs:report", app, "--format", "json").stdout)
        assert report["logs computed vector sink"] == f"syslog://127.0.0.1:{port}"
        assert report["logs shipped by"] == f"syslog udp://127.0.0.1:{port}"

        marker = f"/shipped-{unique('m')}"
        assert server.get(app, marker)[0] == 200
        deadline, got = time.monotonic() + 20, b""
        while marker.encode() not in got and time.monotonic() < deadline:
            try:
                got += sink.recv(65535)
            except TimeoutError:
                pass
        assert marker.encode() in got, got[-500:]
        assert f" {app}.web ".encode() in got  # tagged APP.PROCESS
        assert marker in server.ssh("logs", app, "-n", "20").stdout  # `logs` still reads the engine's copy
    finally:
        sink.close()

    for args, message in [
        (("logs:set", app, "vector-sink", "http://127.0.0.1:9/x"), "error: HTTP sinks are not supported"),
        (("logs:set", app, "vector-sink", "syslog://127.0.0.1"), "error: invalid vector-sink: give the port"),
        (("logs:set", app, "max-size", "10m"), "error: unknown logs property 'max-size'"),
    ]:
        bad = server.ssh(*args, check=False)
        assert bad.returncode == 2 and bad.stderr.startswith(message), bad.stderr
    server.ssh("logs:set", app, "vector-sink")  # no value: unset
    server.ssh("logs:set", "--global", "vector-sink", "gelf+tcp://127.0.0.1:12201")
    report = json.loads(server.ssh("logs:report", app, "--format", "json").stdout)
    assert (report["logs vector sink"], report["logs global vector sink"]) == ("", "gelf+tcp://127.0.0.1:12201")
    server.ssh("logs:set", "--global", "vector-sink")

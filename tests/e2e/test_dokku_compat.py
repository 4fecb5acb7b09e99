"""What Dokku's users rely on, end to end (issue 15): multi-line config over SSH (`--encoded`), app.json with
comments, an authoritative app.json formation, git submodules, EXPOSEd ports and the uptime check.
A real `pushdock serve`, the real git and ssh clients, Docker and nginx; the apps are small ones of our own."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness import Server, free_port, http_get, unique

pytestmark = pytest.mark.docker

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEAq7BFUpkGp3+LQmlQ\n"
       "Yx2eqzDV+xWjL6Mc\tp1AThqrKQ==\n-----END PRIVATE KEY-----\n")
WORKER = 'worker: python3 -u -c "import time; time.sleep(100000)"\n'
# A web process that ignores $PORT: it serves HTTP on a port of its own.
HARDCODED = ("FROM pushdock/stack:bookworm\nWORKDIR /srv\n"
             'CMD ["python3", "-u", "-m", "http.server", "3000"]\n')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("compat"))
    srv.env["PUSHDOCK_READY_TIMEOUT"] = "8"  # the off-port app fails its HTTP check: no need to wait 30 s
    srv.start()
    srv.add_key()
    yield srv
    srv.stop()


def one_line_error(cp: subprocess.CompletedProcess[str], text: str) -> None:
    assert cp.returncode != 0
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert text in cp.stderr, cp.stderr


def formation(server: Server, app: str) -> list[str]:
    """The processes of the newest release (an old release's containers retire after the push has returned)."""
    rows = json.loads(server.cli("ps:report", app, "--format", "json").stdout)
    newest = max((int(r["release"][1:]) for r in rows), default=0)
    return sorted(r["process"] for r in rows if r["release"] == f"v{newest}")


def test_multi_line_config_over_ssh_is_byte_exact(server) -> None:
    app = unique("pem")
    work = server.app_repo(app)
    assert server.push(work, app).returncode == 0
    encoded = base64.b64encode(PEM.encode()).decode()
    server.ssh("config:set", "--no-restart", app, "PLAIN=x y")
    server.ssh("config:set", "--encoded", app, f"TLS_KEY={encoded}")
    assert server.ssh("config:get", "--encoded", app, "TLS_KEY").stdout.strip() == encoded
    assert server.ssh("config:get", app, "TLS_KEY").stdout == PEM + "\n"
    assert server.ssh("run", app, "printenv", "TLS_KEY").stdout == PEM + "\n"  # in the container, whole
    assert server.get(app, "/env/TLS_KEY") == (200, PEM.strip())  # the web process has it too

    # bad base64: one line, nothing applied (PLAIN keeps its value)
    cp = server.ssh("config:set", "--encoded", app, "PLAIN=eQ==", "TLS_KEY=not*base64", check=False)
    one_line_error(cp, "the value of TLS_KEY is not base64")
    assert server.ssh("config:get", app, "PLAIN").stdout == "x y\n"
    assert encoded not in (server.data / "events.log").read_text()

    # every export format and refs/meta/config keep it
    from gitserver.settings_file import parse_env

    assert parse_env(server.ssh("config:export", app, "--format", "env").stdout)["TLS_KEY"] == PEM
    assert json.loads(server.ssh("config:export", app, "--format", "json").stdout)["TLS_KEY"] == PEM
    shell = server.ssh("config:export", app, "--format", "shell").stdout
    printed = subprocess.run(["sh", "-c", shell + 'printf %s "$TLS_KEY"'], capture_output=True, text=True, env={})
    assert printed.stdout == PEM
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=work, check=True)
    env_file = server.git("show", "FETCH_HEAD:env", cwd=work, check=True).stdout
    assert parse_env(env_file)["TLS_KEY"] == PEM
    # pushed back unchanged plus one key: the multi-line value survives the round trip through the ref
    server.git("checkout", "-q", "FETCH_HEAD", cwd=work, check=True)
    (work / "env").write_text(env_file + "EXTRA=1\n")
    server.commit(work, "extra")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert server.ssh("run", app, "printenv", "TLS_KEY").stdout == PEM + "\n"


def test_app_json_with_comments_and_an_authoritative_formation(server) -> None:
    app = unique("form")
    work = server.app_repo(app)
    server.commit(work, "procfile", {"Procfile": "web: python3 -u /app/server.py\n" + WORKER})
    assert server.push(work, app).returncode == 0
    server.cli("ps:scale", app, "worker=1")  # no formation in app.json yet: ps:scale decides
    assert formation(server, app) == ["web.1", "worker.1"]

    server.commit(work, "formation", {"app.json": """{
      // Dokku accepts comments and trailing commas
      "formation": {
        "web": {"quantity": 2}, /* worker is not named: 0 */
      },
      "scripts": {"dokku": {"postdeploy": "echo 'after // deploy'",},},
    }"""})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "after // deploy" in res.stderr
    assert formation(server, app) == ["web.1", "web.2"]  # app.json's counts, the stored worker=1 is gone
    assert "formation: web=2 worker=0 (from app.json: ps:scale is off)" in server.ssh("ps:report", app).stdout

    cp = server.ssh("ps:scale", app, "worker=1", check=False)
    one_line_error(cp, "formation key of its app.json (web=2 worker=0)")
    assert formation(server, app) == ["web.1", "web.2"]

    server.commit(work, "no formation", {"app.json": "{}"})
    assert server.push(work, app).returncode == 0
    assert formation(server, app) == ["web.1", "web.2"]  # kept from the last deploy, as Dokku does
    server.ssh("ps:scale", app, "web=1")
    assert formation(server, app) == ["web.1"]


def test_a_web_process_off_port_is_named_and_the_uptime_check_deploys_it(server) -> None:
    app = unique("up")
    work = server.app_repo(app)
    server.commit(work, "hard-coded port", {"Dockerfile": HARDCODED})
    res = server.push(work, app)
    assert res.returncode != 0 and "[remote rejected]" in res.stderr
    assert "web.1 did not answer HTTP on PORT=5000 within 8s: it listens on 3000 instead" in res.stderr, res.stderr
    assert f"checks:set {app} type uptime" in res.stderr
    server.commit(work, "loopback", {"Procfile": "web: python3 -u -m http.server $PORT --bind 127.0.0.1\n"})
    res = server.push(work, app)
    assert "it listens on 127.0.0.1:5000 only: listen on 0.0.0.0:$PORT" in res.stderr, res.stderr
    (work / "Procfile").unlink()

    server.ssh("checks:set", app, "type", "uptime")
    server.ssh("checks:set", app, "wait", "3")
    report = server.ssh("checks:report", app).stdout
    assert "uptime (every instance still running after 3s)" in report
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "web.1 ready" in res.stderr and "still running after 3s" in res.stderr

    # a process that dies within the wait fails the uptime check; the running release stays
    server.commit(work, "dies", {"Procfile": 'web: python3 -c "import time; time.sleep(1); raise SystemExit(3)"\n'})
    res = server.push(work, app)
    assert res.returncode != 0
    assert "web.1 exited with status 3 within the 3s uptime check" in res.stderr, res.stderr
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=work, check=True)
    settings = server.git("show", "FETCH_HEAD:pushdock.toml", cwd=work, check=True).stdout
    assert 'type = "uptime"' in settings and "wait = 3" in settings


@contextlib.contextmanager
def dumb_http(root: Path):  # type: ignore[no-untyped-def]
    """Serve `root` read-only over HTTP on 127.0.0.1 (git's dumb HTTP protocol: a bare repo after
    `git update-server-info`): a network URL for submodules, as a code host would give."""
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_a_submodule_is_fetched_and_served_and_an_unfetchable_one_rejects_the_push(server, tmp_path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    server.git("init", "-q", "-b", "main", cwd=lib, check=True)
    server.commit(lib, "lib", {"body.txt": "served from the submodule\n"})
    hosted = tmp_path / "hosted"
    hosted.mkdir()
    server.git("clone", "-q", "--bare", str(lib), str(hosted / "lib.git"), cwd=tmp_path, check=True)
    server.git("update-server-info", cwd=hosted / "lib.git", check=True)

    app = unique("sub")
    work = server.app_repo(app)
    (work / "body.txt").unlink()
    with dumb_http(hosted) as base:
        server.git("submodule", "add", "-q", f"{base}/lib.git", "content", cwd=work, check=True)
        server.commit(work, "body from a submodule", {"Dockerfile": (
            "FROM pushdock/stack:bookworm\nWORKDIR /app\nCOPY server.py /app/\nCOPY content/body.txt /app/\n"
            'CMD ["python3", "-u", "/app/server.py"]\n')})
        res = server.push(work, app)
        assert res.returncode == 0, res.stderr
        assert f"Fetching submodule content ({base}/lib.git)" in res.stderr
        assert server.get(app) == (200, "served from the submodule")

        gone = f"http://user:s3cret@127.0.0.1:{free_port()}/lib.git"  # nothing listens there
        server.git("config", "-f", ".gitmodules", "submodule.content.url", gone, cwd=work, check=True)
        server.commit(work, "moved")
        res = server.push(work, app)
        assert res.returncode != 0
        assert "[remote rejected] main -> main (submodule content (http://127.0.0.1:" in res.stderr, res.stderr
        assert "it cannot be fetched" in res.stderr and "s3cret" not in res.stderr
        for log in (server.base / "serve.log", server.data / "logs" / "pushdock.log", server.data / "events.log"):
            assert "s3cret" not in log.read_text(), log

        server.git("config", "-f", ".gitmodules", "submodule.content.url", str(hosted / "lib.git"), cwd=work,
                   check=True)
        server.commit(work, "a local path")
        res = server.push(work, app)
        assert res.returncode != 0
        assert "local paths and file:// are not fetched" in res.stderr, res.stderr
    assert server.get(app) == (200, "served from the submodule")  # the last good release still serves


def test_an_exposed_port_is_served_by_the_proxy_on_that_port(tmp_path) -> None:
    """EXPOSE P (the web port) gets Dokku's `http:P:P`. The test EXPOSEs free ports, not 3000: servers of other
    tests run beside this one, and the mapping binds the same port on the host."""
    srv = Server(tmp_path)
    srv.env["PUSHDOCK_EXPOSE_PORTS"] = "1"  # the harness turns it off for every other server
    srv.start()
    try:
        srv.add_key()
        web, other = free_port(), free_port()
        app = unique("expose")
        work = srv.app_repo(app, body="exposed")
        srv.commit(work, "expose", {"Dockerfile": (
            "FROM pushdock/stack:bookworm\nWORKDIR /app\nCOPY server.py body.txt /app/\n"
            f'EXPOSE {web} {other}/tcp\nCMD ["python3", "-u", "/app/server.py"]\n')})
        res = srv.push(work, app)
        assert res.returncode == 0, res.stderr
        assert http_get(web, f"{app}.localhost") == (200, "exposed")  # through the proxy, on the EXPOSEd port
        assert srv.get(app) == (200, "exposed")  # and still on the proxy's port (APP.DOMAIN:PROXY_PORT)
        report = json.loads(srv.ssh("ports:report", app, "--format", "json").stdout)
        assert report["sources"] == f"http:{srv.proxy_port}:{web} default, http:{web}:{web} dockerfile EXPOSE"
        assert report["exposed, not mapped"] == f"{other} (not the web port ({web}): only the web port is routed)"

        srv.ssh("ports:set", app, f"http:{srv.proxy_port}:{web}")
        report = json.loads(srv.ssh("ports:report", app, "--format", "json").stdout)
        assert report["sources"] == f"http:{srv.proxy_port}:{web} ports:set"
        assert srv.get(app) == (200, "exposed")
    finally:
        srv.stop()

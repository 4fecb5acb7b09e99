"""Releases, the process model and zero-downtime checks, end to end: a real `pushdock serve` (one for the
module), the real git and ssh clients, Docker and nginx. Every change under load is checked with a bounded
loop of non-keep-alive GETs through the proxy: no failed request, and the expected body after."""

from __future__ import annotations

import json
import os
import subprocess
import time

import docker
import pytest

from tests.harness import PUSHDOCK, ROOT, Server, image_tags, unique

# The tests on the module's `live` app (and any that counts failed requests under load) run in order in make
# test's serial pass; the others, each on an app of its own, run in the parallel pass.
pytestmark = pytest.mark.docker

WEB = "web: python3 -u /app/server.py\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("releases"), PUSHDOCK_RELEASE_TIMEOUT="5").start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def live(server):
    """One app, deployed once with a release phase; the tests below change it in turn."""
    app = unique("rel")
    work = server.app_repo(app, body="body one")
    server.commit(work, "procfile", {"Procfile": WEB + "release: echo release phase of $PUSHDOCK_RELEASE\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "remote:        release phase of v1" in res.stderr
    return app, work


def releases(server: Server, app: str) -> list[dict]:
    return json.loads(server.cli("releases", app, "--format", "json").stdout)


def under_load(server: Server, app: str, action, *, expect: str):
    """Run `action` under a load loop; no request may fail; `expect` is served after."""
    with server.load(app, threads=2, max_seconds=90) as load:
        time.sleep(0.5)
        out = action()
        time.sleep(0.5)
    r = load.result
    assert r.requests > 20, r
    assert r.failed == 0, (r.errors, r.bodies)
    assert server.get(app) == (200, expect)
    return out, r


def one_line_error(cp: subprocess.CompletedProcess[str], text: str) -> None:
    assert cp.returncode != 0
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert text in cp.stderr, cp.stderr


@pytest.mark.zero_downtime
def test_redeploy_config_scale_and_rollback_drop_no_request(server, live) -> None:
    app, work = live
    server.commit(work, "v2", {"body.txt": "body two\n"})
    res, _ = under_load(server, app, lambda: server.push(work, app), expect="body two")
    assert res.returncode == 0, res.stderr

    under_load(server, app, lambda: server.ssh("config:set", app, "GREETING=hello"), expect="body two")
    assert server.get(app, "/env/GREETING") == (200, "hello")

    under_load(server, app, lambda: server.cli("ps:scale", app, "web=3"), expect="body two")
    report = json.loads(server.cli("ps:report", app, "--format", "json").stdout)
    assert sorted(r["process"] for r in report) == ["web.1", "web.2", "web.3"]
    _, load = under_load(server, app, lambda: server.cli("ps:scale", app, "web=1"), expect="body two")
    assert len(json.loads(server.cli("ps:report", app, "--format", "json").stdout)) == 1

    # roll back to v1: its image, its env (no GREETING), its formation
    out, _ = under_load(server, app, lambda: server.ssh("releases:rollback", app, "v1"), expect="body one")
    assert "Rolling back" in out.stdout and "release phase of v" in out.stdout
    assert server.get(app, "/env/GREETING") == (200, "")
    assert "GREETING" not in server.cli("config:show", app).stdout
    rs = releases(server, app)
    assert rs[0]["why"] == "rollback to v1" and rs[0]["status"] == "current" and rs[0]["version"] == 6
    assert [r["why"].split()[0] for r in rs] == ["rollback", "ps:scale", "ps:scale", "config:set", "deploy", "deploy"]
    assert "hello" not in server.cli("releases", app).stdout  # env values are never listed
    info = server.cli("releases:info", app, "v4").stdout
    assert "GREETING" in info and "hello" not in info

    # and forward again to v4 (body two, with GREETING)
    under_load(server, app, lambda: server.cli("releases:rollback", app, "4"), expect="body two")
    assert server.get(app, "/env/GREETING") == (200, "hello")


@pytest.mark.zero_downtime
def test_release_phase_failure_keeps_the_old_release(server, live) -> None:
    app, work = live
    before = server.get(app)
    count = len(releases(server, app))
    server.commit(work, "failing release", {"Procfile": WEB + "release: echo migrating now; exit 3\n",
                                            "body.txt": "never served\n"})
    res = server.push(work, app)
    assert res.returncode != 0
    assert "remote:        migrating now" in res.stderr  # the output was streamed
    assert "! [remote rejected] main -> main (release command failed with exit status 3)" in res.stderr
    assert server.get(app) == before
    rs = releases(server, app)
    assert len(rs) == count + 1 and rs[0]["status"] == "failed"
    assert rs[1]["status"] == "current"

    # a hanging release phase times out (PUSHDOCK_RELEASE_TIMEOUT=5 for this server)
    server.commit(work, "hanging release", {"Procfile": WEB + "release: echo stuck; sleep 120\n"})
    t0 = time.monotonic()
    res = server.push(work, app)
    assert time.monotonic() - t0 < 60
    assert "(release command did not finish within 5s)" in res.stderr, res.stderr
    assert server.get(app) == before
    label = f"pushdock.data-dir={server.data.absolute()}"
    left = docker.from_env().containers.list(all=True, filters={"label": [label, "pushdock.one-off"]})
    assert left == []
    server.git("reset", "-q", "--hard", "HEAD~2", cwd=work, check=True)


@pytest.mark.zero_downtime
def test_bad_input_is_one_line_and_changes_nothing(server, live) -> None:
    app, _ = live
    before = releases(server, app)
    for args, text in [
        (("ps:scale", app, "web=-1"), "expected TYPE=COUNT"),
        (("ps:scale", app, "web=abc"), "expected TYPE=COUNT"),
        (("ps:scale", app, "worker=1"), "unknown process type 'worker'"),
        (("ps:scale", app, "release=1"), "release is the release phase"),
        (("releases:rollback", app, "v99"), f"app {app} has no release v99"),
        (("releases:rollback", app, "vx"), "expected a release such as v3"),
        (("releases:set", app, "keep", "0"), "keep must be a whole number from 1 to 100"),
        (("checks:set", app, "stop-timeout", "soon"), "stop-timeout must be a whole number"),
        (("ps:restart", app, "worker"), "runs no worker process"),
        (("logs", app, "-p", "../x"), "invalid process type"),
    ]:
        one_line_error(server.ssh(*args, check=False), text)
    assert releases(server, app) == before


def test_app_json_healthchecks_gate_the_deploy(server) -> None:
    app = unique("hc")
    work = server.app_repo(app, body="checked body")
    good = {"healthchecks": {"web": [{"type": "startup", "name": "body", "path": "/", "content": "checked",
                                      "attempts": 3, "wait": 0.5}]},
            "scripts": {"dokku": {"predeploy": "echo predeploy ran", "postdeploy": "echo postdeploy ran"}}}
    server.commit(work, "app.json", {"app.json": json.dumps(good)})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "check body passed" in res.stderr
    lines = [line.strip() for line in res.stderr.splitlines()]
    marks = [lines.index(m) for m in ("remote:        predeploy ran", "remote: -----> Routing to v1",
                                      "remote:        postdeploy ran")]
    assert marks == sorted(marks), lines  # predeploy before the switch, postdeploy after
    assert "GET / contains 'checked'" in server.cli("checks:report", app).stdout

    # a check the new code fails (its body lacks the content) fails the push, the old release keeps serving
    failing = dict(good["healthchecks"]["web"][0], path="/ready", attempts=2)
    server.commit(work, "bad check", {"app.json": json.dumps({"healthchecks": {"web": [failing]}}),
                                      "body.txt": "plain body\n"})
    res = server.push(work, app)
    assert res.returncode != 0
    assert "failed check body: GET /ready answered without 'checked' (2 attempts)" in res.stderr, res.stderr
    assert server.get(app) == (200, "checked body")
    # a malformed path is refused before anything is built
    server.commit(work, "malformed", {"app.json": json.dumps({"healthchecks": {"web": [{"path": "health"}]}})})
    res = server.push(work, app)
    assert "app.json healthchecks.web[0].path must start with '/'" in res.stderr
    assert "Building with" not in res.stderr
    assert server.get(app) == (200, "checked body")


def pruned_to(app: str, tags: list[str], timeout: float = 120.0) -> list[str]:
    """The app's image tags once they are `tags` (a push prunes after the pusher has its answer), or as they are
    at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = image_tags(app)
        if found == tags or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.zero_downtime  # a rollback under load
def test_prune_keeps_n_images_and_rollback_says_pruned(server) -> None:
    app = unique("prune")
    work = server.app_repo(app, body="b0")
    server.cli("apps:create", app)
    server.cli("releases:set", app, "keep", "2")
    for n in range(4):
        server.commit(work, f"b{n}", {"body.txt": f"b{n}\n"})
        assert server.push(work, app).returncode == 0
    kept = [f"pushdock/{app}:v3", f"pushdock/{app}:v4"]
    assert pruned_to(app, kept) == kept  # pruning ends a push, after its answer
    rs = {r["version"]: r for r in releases(server, app)}
    assert [v for v in sorted(rs) if rs[v]["pruned"]] == [1, 2]
    one_line_error(server.ssh("releases:rollback", app, "v1", check=False), "v1 was pruned: its image is gone")
    assert "superseded (pruned)" in server.cli("releases", app).stdout
    under_load(server, app, lambda: server.cli("releases:rollback", app), expect="b2")  # the previous: v3


@pytest.mark.zero_downtime
def test_run_passes_the_exit_status_back(server, live) -> None:
    app, _ = live
    host = server.cli("run", app, "sh", "-c", "echo run on $DYNO; exit 7", check=False)
    assert host.returncode == 7 and "run on run.1" in host.stdout
    assert host.stderr == ""  # the command's status, not a pushdock error: no `error:` line
    ssh = server.ssh("run", app, "sh", "-c", "echo via ssh; exit 4", check=False)
    assert ssh.returncode == 4 and "via ssh" in ssh.stdout
    assert server.ssh("run", app, "true").returncode == 0
    piped = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", "run", app, "cat"],
                           input="through stdin\n", capture_output=True, text=True, timeout=60, env=server.git_env)
    assert piped.returncode == 0 and piped.stdout == "through stdin\n", piped
    # ssh -tt: a terminal all the way into the container
    tty = subprocess.run([*server.ssh_argv(server.key), "-tt", "pushdock@127.0.0.1",
                          f"run {app} sh -c 'test -t 0 && test -t 1 && echo on a tty; exit 9'"],
                         capture_output=True, text=True, timeout=60, env=server.git_env, stdin=subprocess.DEVNULL)
    assert tty.returncode == 9 and "on a tty" in tty.stdout, tty
    # interactive: keys typed into the terminal reach a shell in the container
    shell = subprocess.run([*server.ssh_argv(server.key), "-tt", "pushdock@127.0.0.1", f"run {app} sh"],
                           input="echo $((6 * 7))\nexit 3\n", capture_output=True, text=True, timeout=60,
                           env=server.git_env)
    assert shell.returncode == 3 and "42" in shell.stdout, shell
    # the host CLI on a terminal gives the container one too
    status, output = on_a_terminal([*PUSHDOCK, "run", app, "sh", "-c", "test -t 0 && echo host tty; exit 6"],
                                   server.env)
    assert status == 6 and b"host tty" in output, output


def on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run argv with a pty as its stdin/stdout/stderr; (exit status, everything it wrote)."""
    master, slave = os.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return p.wait(60), output


def test_checks_commands_and_process_model(server) -> None:
    app = unique("ps")
    work = server.app_repo(app, body="ps body")
    server.commit(work, "worker", {"Procfile": WEB + "worker: while true; do echo tick; sleep 0.5; done\n"
                                   "crasher: sleep 2; exit 1\n",
                                   "app.json": json.dumps({"formation": {"web": {"quantity": 2},
                                                                         "worker": {"quantity": 1}}})})
    assert server.push(work, app).returncode == 0
    report = json.loads(server.cli("ps:report", app, "--format", "json").stdout)
    assert sorted(r["process"] for r in report) == ["web.1", "web.2", "worker.1"]  # app.json formation
    assert all(r["address"] for r in report if r["process"].startswith("web"))
    assert not next(r for r in report if r["process"] == "worker.1")["address"]

    # restart only the worker: the web containers stay
    webs = {r["container"] for r in report if r["process"].startswith("web")}
    server.cli("ps:restart", app, "worker")
    after = json.loads(server.cli("ps:report", app, "--format", "json").stdout)
    assert {r["container"] for r in after if r["process"].startswith("web")} == webs
    logs = server.ssh("logs", app, "-p", "worker", "-n", "5").stdout
    assert "worker.1: tick" in logs and "web." not in logs

    # checks settings
    server.ssh("checks:skip", app)
    server.ssh("checks:set", app, "wait-to-retire", "1")
    text = server.cli("checks:report", app).stdout
    assert "skipped" in text and "wait-to-retire: 1s" in text
    out = server.cli("ps:restart", app).stdout
    assert "(checks skipped)" in out and "retire in 1s" in out
    server.ssh("checks:enable", app)
    server.ssh("checks:disable", app)
    server.ssh("checks:set", app, "wait-to-retire")
    out = server.cli("config:set", app, "X=1").stdout
    assert "(checks disabled: the app is down until" in out
    assert server.get(app) == (200, "ps body")
    server.ssh("checks:enable", app)

    # a crash-looping process shows in ps:report. app.json's formation decides the counts (Dokku's rule):
    # ps:scale is refused, the crasher is started by a push of app.json
    one_line_error(server.cli("ps:scale", app, "crasher=1", check=False), "formation key of its app.json")
    server.commit(work, "crasher", {"app.json": json.dumps({"formation": {
        "web": {"quantity": 2}, "worker": {"quantity": 1}, "crasher": {"quantity": 1}}})})
    assert server.push(work, app).returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.cli("ps:report", app).stdout
        if "crasher.1 is crash-looping" in text or "crasher.1 crashed and was restarted" in text:
            break
        time.sleep(1)
    assert "crasher.1" in text and ("crash-looping" in text or "restarted" in text), text


@pytest.mark.zero_downtime
def test_release_info_and_settings_commands(server, live) -> None:
    app, _ = live
    text = server.cli("releases:info", app, "v1").stdout
    assert "release: echo release phase of $PUSHDOCK_RELEASE" in text
    server.ssh("releases:set", app, "keep", "3")
    assert "keeping the last 3 images" in server.cli("releases", app).stdout
    server.ssh("releases:set", app, "keep")
    assert "keeping the last 5 images" in server.cli("releases", app).stdout
    one_line_error(server.ssh("releases:set", "--global", "keep", "x", check=False), "keep must be")

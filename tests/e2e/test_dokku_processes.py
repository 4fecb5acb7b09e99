"""Processes and deploy tasks as Dokku runs them, end to end (a real `pushdock serve`, git and ssh clients,
Docker and nginx), with the small app in tests/apps/procs built by the Dockerfile and herokuish builders:

- a Procfile command is the container's main process under the init: SIGTERM reaches it, a worker's 2 s
  shutdown handler finishes at a redeploy, and the container runs one app process, not `sh` and a child;
- predeploy's files are kept in the deployed image (and no config value is stored in it); an image's own
  ENTRYPOINT receives a task's and a process's command as its arguments;
- a failed postdeploy rejects the push, the new release serving and the branch where it was;
- an instance that dies during the checks shows its stack trace, not npm's notices.
"""

from __future__ import annotations

import json
import threading
import time

import docker
import pytest

from tests.harness import EngineEvents, Server, event_action, unique

pytestmark = pytest.mark.docker

DOCKERFILE = 'FROM pushdock/stack:bookworm\nWORKDIR /app\nCOPY . /app\nCMD ["python3", "-u", "web.py"]\n'
ENTRY_DOCKERFILE = DOCKERFILE.replace("CMD", 'ENTRYPOINT ["/app/entry.sh"]\nCMD')
PROCFILE = "web: python3 -u web.py\nworker: python3 -u worker.py\n"
PREDEPLOY = json.dumps({"scripts": {"dokku": {"predeploy": "python3 -u task.py predeploy"}}})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("dokku-procs"))
    srv.env["PUSHDOCK_STOP_TIMEOUT"] = "3"  # the worker's 2 s handler fits; a lost SIGTERM would not end it
    srv.start()
    srv.add_key()
    yield srv
    srv.stop()


def containers(server: Server, app: str, process: str) -> list:
    labels = [f"pushdock.app={app}", f"pushdock.process={process}", f"pushdock.data-dir={server.data}"]
    return docker.from_env().containers.list(filters={"label": labels})


def app_processes(container) -> list[str]:
    """The command lines running in the container, but the init's (docker-init / tini)."""
    top = container.top(ps_args="-eo pid,args")
    col = top["Titles"].index("COMMAND") if "COMMAND" in top["Titles"] else -1
    return [row[col] for row in top["Processes"] if "docker-init" not in row[col] and "tini" not in row[col]]


def stop_duration(events: list[dict]) -> float:
    """Seconds from the engine's SIGTERM (`kill` event, signal 15) to the container's `die` event."""
    times = {}
    for e in events:
        action = event_action(e)
        if (action == "kill" and e["Actor"]["Attributes"].get("signal") == "15") or action == "die":
            times.setdefault(action, e["timeNano"] / 1e9)
    assert {"kill", "die"} <= set(times), [(event_action(e), e["Actor"]["Attributes"]) for e in events]
    return times["die"] - times["kill"]


def removed(container, timeout: float) -> bool:
    """Whether the engine no longer knows the container within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            container.reload()
        except docker.errors.NotFound:
            return True
        time.sleep(0.2)
    return False


class LogFollower(threading.Thread):
    """The lines a container writes until it is gone."""

    def __init__(self, container) -> None:
        super().__init__(daemon=True)
        self.container, self.lines, self.ended = container, [], 0.0

    def run(self) -> None:
        buf = b""
        try:
            for chunk in self.container.logs(stream=True, follow=True, since=int(time.time()) - 60):
                buf += chunk
        except Exception:
            pass
        self.ended = time.monotonic()
        self.lines = buf.decode(errors="replace").splitlines()


def procs_app(server: Server, prefix: str, builder: str, files: dict[str, str]):
    app = unique(prefix)
    work = server.app_repo(app, "procs")
    server.commit(work, builder, {**files, **({"Dockerfile": DOCKERFILE} if builder == "dockerfile" else {})})
    return app, work


@pytest.mark.parametrize("builder", ["dockerfile", "herokuish"])
def test_sigterm_reaches_the_procfile_process_at_a_redeploy(server: Server, builder: str) -> None:
    app, work = procs_app(server, f"sig{builder[:3]}", builder, {"Procfile": PROCFILE})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert f"Building with the {builder} builder" in res.stderr
    server.cli("ps:scale", app, "worker=1")
    [worker] = containers(server, app, "worker")
    assert app_processes(worker) == ["python3 -u worker.py"]  # one process: no `sh -c` around it
    [web] = containers(server, app, "web")
    assert app_processes(web) == ["python3 -u web.py"]

    follower = LogFollower(worker)
    follower.start()
    time.sleep(0.5)
    server.commit(work, "redeploy")
    # the worker's events, subscribed to before the redeploy (the engine keeps only its last 256 events to ask
    # for afterwards, every container's: on a busy engine these may be gone from it by then)
    with EngineEvents({"container": worker.id}) as events:
        res = server.push(work, app)
        assert res.returncode == 0, res.stderr
        follower.join(30)
        # Retiring ends with the old container's removal, after the pusher had its answer. Listing as soon as it
        # died can still show it running: the engine sends `die` before its list view learns the container
        # stopped. (The log stream can end before the engine has sent `die` at all: it closes with the stdio.)
        assert removed(worker, timeout=30), f"{worker.name} not removed after it stopped"
        seen = events.wait_for(lambda e: event_action(e) == "destroy", timeout=30)
    assert not follower.is_alive()
    assert "worker v2: SIGTERM, finishing the job" in follower.lines, follower.lines
    finished = [line for line in follower.lines if "job finished" in line]
    assert len(finished) == 1 and float(finished[0].split()[4][:-1]) >= 2.0, follower.lines
    # the engine's own account: from SIGTERM to the container's end took the handler's time (< stop-timeout 3)
    took = stop_duration(seen)
    assert 2.0 <= took < 3.0, took
    workers = containers(server, app, "worker")
    assert [w.labels["pushdock.release"] for w in workers] == ["3"], [(w.name, w.status) for w in workers]

    # a `run` command line is the init's only child too
    assert server.cli("run", app, "python3 -c 'import os; print(os.getppid())'").stdout.split() == ["1"]


@pytest.mark.parametrize("builder", ["dockerfile", "herokuish"])
def test_predeploy_files_are_kept_in_the_deployed_image(server: Server, builder: str) -> None:
    app = unique(f"pre{builder[:3]}")
    server.cli("apps:create", app)
    server.cli("config:set", "--no-restart", app, "SECRET_TOKEN=s3cr3t-never-in-an-image")
    files = {"Procfile": "web: python3 -u web.py\n", "app.json": PREDEPLOY}
    work = server.app_repo(app, "procs")
    server.commit(work, builder, {**files, **({"Dockerfile": DOCKERFILE} if builder == "dockerfile" else {})})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "remote:        predeploy task of v1 runs" in res.stderr

    # predeploy's file is in the image that serves; the config reaches the app but is not stored in the image
    assert server.get(app, "/file/predeploy.txt") == (200, "kept by predeploy of v1")
    assert server.get(app, "/env/SECRET_TOKEN") == (200, "s3cr3t-never-in-an-image")
    image = docker.from_env().images.get(f"pushdock/{app}:v1")
    assert "s3cr3t" not in json.dumps(image.attrs["Config"]), image.attrs["Config"]["Env"]
    assert "pushdock.one-off" not in (image.attrs["Config"].get("Labels") or {})

    # a config change runs predeploy again, on the image it reuses, as an image of its own
    server.cli("config:set", app, "GREETING=hi")
    assert server.get(app, "/file/predeploy.txt") == (200, "kept by predeploy of v2")
    [web] = containers(server, app, "web")
    assert web.attrs["Config"]["Image"] == f"pushdock/{app}:v2"
    assert server.get(app, "/env/GREETING") == (200, "hi")


def test_an_entrypoint_gets_the_commands_as_arguments(server: Server) -> None:
    app = unique("entry")
    work = server.app_repo(app, "procs")
    server.commit(work, "entrypoint", {
        "Dockerfile": ENTRY_DOCKERFILE, "Procfile": "web: python3 -u web.py\nrelease: python3 -u task.py release\n",
        "app.json": PREDEPLOY,
    })
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "remote:        entrypoint got 4 arguments: python3 -u task.py predeploy" in res.stderr
    assert "remote:        entrypoint got 4 arguments: python3 -u task.py release" in res.stderr
    assert server.get(app, "/file/predeploy.txt") == (200, "kept by predeploy of v1")
    [web] = containers(server, app, "web")
    assert "entrypoint got 3 arguments: python3 -u web.py" in web.logs().decode()


def test_a_failed_postdeploy_rejects_the_push_while_the_new_release_serves(server: Server) -> None:
    app = unique("post")
    work = server.app_repo(app, "procs")
    first = server.commit(work, "v1", {
        "Dockerfile": DOCKERFILE, "Procfile": "web: python3 -u web.py\n",
        "app.json": json.dumps({"scripts": {"dokku": {"postdeploy": "python3 -u task.py postdeploy"}}}),
    })
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    server.commit(work, "v2", {"app.json": json.dumps({"scripts": {"dokku": {"postdeploy": "python3 -u task.py fail"}}})})
    res = server.push(work, app)
    assert res.returncode == 1, res.stderr
    assert "remote:        the chat service did not answer" in res.stderr
    assert ("! [remote rejected] main -> main (postdeploy failed (postdeploy command failed with exit status 3): "
            "the new release v2 keeps serving)") in res.stderr
    assert server.get(app) == (200, "procs v2")
    assert json.loads(server.cli("releases", app, "--format", "json").stdout)[0]["status"] == "current"
    # the branch stays where the last fully successful deploy left it: a retry deploys again
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == first
    res = server.push(work, app)
    assert res.returncode == 1 and "the new release v3 keeps serving" in res.stderr, res.stderr
    assert server.get(app) == (200, "procs v3")


def test_a_crash_during_the_checks_shows_the_stack_trace_not_npm_notices(server: Server) -> None:
    app = unique("crash")
    work = server.app_repo(app, "procs")
    server.commit(work, "crash", {"Dockerfile": DOCKERFILE, "Procfile": "web: python3 -u crash.py\n"})
    res = server.push(work, app)
    assert res.returncode == 1, res.stderr
    shown = res.stderr.split("last log lines:")[1].split("remote:  !")[0]
    assert "Error: Cannot find module 'expresss'" in shown, res.stderr
    assert "MODULE_NOT_FOUND" in shown
    assert "npm notice" not in shown and "npm WARN" not in shown, shown
    lines = [line for line in shown.splitlines() if line.startswith("remote:")]
    assert all(line.strip() != "remote:" for line in lines), lines  # no blank lines
    assert len(lines) <= 8

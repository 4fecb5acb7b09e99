"""Claim: roles hold on every door. An admin runs everything; a deployer pushes to and runs app commands on
its listed apps only; admin-only commands refuse deployers. Doors: the SSH command door, git over SSH
(receive and upload), git over HTTP (tokens, HTTP Basic auth at /git/APP.git) and the host CLI (root is
admin). Pushes use `-o skip-deploy` (stored, not deployed), so this needs the real server but no container
builds. Every attempt is in the events log, and no token or secret value is in it or in any server log."""

from __future__ import annotations

import base64
import http.client
import json
import subprocess

import pytest

from tests.harness import Server, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("roles")
    srv = Server(base).start()
    srv.add_key("root-admin")
    srv.mine, srv.theirs = unique("mine"), unique("theirs")
    for app in (srv.mine, srv.theirs):
        srv.cli("apps:create", app)
    srv.deployer_key = srv.new_key("deployer")
    srv.add_key("ci", role="deployer", apps=srv.mine, key=srv.deployer_key)
    # tokens of the HTTP door: (name, token); a wrong one looks like a real one
    srv.tokens = {
        "admin": ("http-admin", srv.cli("tokens:add", "http-admin").stdout.splitlines()[-1]),
        "deployer": ("http-ci", srv.cli("tokens:add", "http-ci", "--role", "deployer", "--apps",
                                        srv.mine).stdout.splitlines()[-1]),
        "wrong": ("", "pdt_" + "x" * 43),
        "none": ("", ""),
    }
    seed = srv.app_repo(unique("seed"))
    for app in (srv.mine, srv.theirs):  # both apps have refs to clone and to keep unchanged
        srv.git("push", "-o", "skip-deploy", srv.remote(app), "main", cwd=seed, check=True)
    yield srv
    srv.stop()


APP_READ = [["config:show", "{app}"], ["apps:report", "{app}"], ["ps:report", "{app}"], ["storage:list", "{app}"],
            ["storage:report", "{app}"], ["builds:list", "{app}"], ["ps:inspect", "{app}"],
            ["letsencrypt:report", "{app}"], ["logs:report", "{app}"], ["proxy:report", "{app}"],
            ["nginx:report", "{app}"], ["docker-options:report", "{app}"], ["network:report", "{app}"]]
APP_WRITE = [["config:set", "--no-restart", "{app}", "SECRET=s3cr3t-value"], ["apps:lock", "{app}"],
             ["apps:unlock", "{app}"], ["repo:gc", "{app}"], ["repo:purge-cache", "{app}"],
             # proxy tuning keys that touch only the app's own traffic
             ["proxy:set", "{app}", "client-max-body-size", "10m"], ["nginx:set", "{app}", "hsts", "true"],
             ["docker-options:add", "{app}", "deploy,run", "--shm-size 64m"], ["docker-options:clear", "{app}"],
             ["network:set", "{app}", "attach-post-create"]]
ADMIN_ONLY = [["ssh-keys:list"], ["apps:create", "{new}"], ["apps:destroy", "{app}", "--force"],
              ["apps:rename", "{app}", "{new}"], ["apps:clone", "{app}", "{new}"],
              # host-wide settings and services
              ["tokens:list"], ["tokens:add", "{new}"], ["tokens:remove", "ci"], ["ssh-keys:remove", "ci"],
              ["proxy:start"], ["proxy:stop", "--all"], ["proxy:set", "--global", "type", "caddy"],
              ["proxy:build-config", "--all"], ["proxy:report"], ["stack:build"], ["swarm:init"], ["swarm:report"],
              ["swarm:set", "node1", "address", "10.0.0.9"], ["domains:add", "--global", "evil.example.com"],
              ["scheduler:set", "--global", "selected", "swarm"], ["builder-pack:set", "--global", "builder", "x"],
              ["registry:set", "--global", "server", "evil.example.com"], ["releases:set", "--global", "keep", "1"],
              ["letsencrypt:set", "--global", "server", "https://evil.example.com/dir"], ["letsencrypt:auto-renew"],
              # limits protect the host from the apps: a deployer may read its app's, not change them
              ["resource:limit", "{app}", "--memory", "64m"], ["resource:limit-clear", "{app}", "--all"],
              # storage directories are host-wide; host paths reach the host's files
              ["storage:ensure-directory", "{new}"], ["storage:mount", "{app}", "/tmp:/host"],
              # plugins run code on the host (scripts, or packages in pushdock's own environment)
              ["plugin:list"], ["plugin:install", "/tmp"], ["plugin:install", "left-pad"], ["plugin:enable", "x"],
              ["plugin:disable", "x"], ["plugin:uninstall", "x"], ["plugin:update", "x"],
              ["plugin:trigger", "post-create", "{app}"],
              # the engine on the host opens the sink's connection: a deployer never picks where it goes
              ["logs:set", "{app}", "vector-sink", "syslog://127.0.0.1:22"],
              ["logs:set", "--global", "vector-sink", "syslog://127.0.0.1:22"],
              # a log path is a file the proxy (root) writes on the host; --global tunes every app
              ["nginx:set", "{app}", "access-log-path", "/var/log/nginx/x.log"],
              ["proxy:set", "{app}", "error-log-path", "/var/log/nginx/x.log"],
              ["proxy:set", "--global", "client-max-body-size", "10m"],
              # services are host-wide: creating, destroying, restarting them and their images
              ["postgres:create", "{new}"], ["postgres:destroy", "{new}", "--force"], ["postgres:restart", "{new}"],
              ["postgres:rebuild-image"], ["redis:create", "{new}"], ["redis:destroy", "{new}", "--force"],
              ["postgres:restore", "{new}", "x.dump"], ["postgres:backup-schedule", "{new}", "@daily"],
              ["postgres:backup-unschedule", "{new}"],
              # networks are host-wide; options that weaken the host's isolation are the admin's
              ["network:create", "{new}"], ["network:destroy", "{new}", "--force"],
              ["docker-options:add", "{app}", "deploy", "--privileged"],
              ["docker-options:add", "{app}", "run", "-v /etc:/host"],
              ["docker-options:add", "{app}", "deploy", "--cap-add=SYS_ADMIN"]]
# A deployer links and unlinks services to its own apps only (the services linked to its apps: tests/e2e/test_services.py).
SERVICE_LINKS = [["postgres:link", "{new}", "{app}"], ["postgres:unlink", "{new}", "{app}"],
                 ["redis:link", "{new}", "{app}"]]


def fill(argv: list[str], app: str) -> list[str]:
    return [a.format(app=app, new=unique("new")) for a in argv]


@pytest.mark.parametrize("argv", APP_READ + APP_WRITE)
def test_deployer_may_use_its_app(server, argv) -> None:
    res = server.ssh(*fill(argv, server.mine), key=server.deployer_key, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("argv", APP_READ + APP_WRITE + SERVICE_LINKS)
def test_deployer_may_not_touch_other_apps(server, argv) -> None:
    before = server.cli("config:export", server.theirs, "--format", "json").stdout
    res = server.ssh(*fill(argv, server.theirs), key=server.deployer_key, check=False)
    assert res.returncode == 13 and res.stderr.startswith("error: ") and "no access" in res.stderr
    assert res.stderr.count("\n") == 1
    assert server.cli("config:export", server.theirs, "--format", "json").stdout == before


@pytest.mark.parametrize("argv", ADMIN_ONLY)
def test_admin_only_commands_refuse_deployers(server, argv) -> None:
    res = server.ssh(*fill(argv, server.mine), key=server.deployer_key, check=False)
    assert res.returncode == 13 and "admin only" in res.stderr, res.stderr
    assert server.mine in server.cli("apps:list").stdout


def test_admin_may_do_everything_on_both_doors(server) -> None:
    temp = unique("tmp")
    server.ssh("apps:create", temp)
    assert "ci" in server.ssh("ssh-keys:list").stdout
    server.cli("config:set", "--no-restart", temp, "A=1")
    server.ssh("apps:destroy", temp, "--force")
    assert temp not in server.cli("apps:list").stdout


def test_git_doors_follow_the_same_rules(server, tmp_path) -> None:
    work = server.app_repo(unique("w"))
    ok = server.git("push", "-o", "skip-deploy", server.remote(server.mine), "HEAD:refs/heads/admin", cwd=work)
    deployer_env = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(server.deployer_key))}
    denied = subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(server.theirs), "main"], cwd=work,
                            env=deployer_env, capture_output=True, text=True)
    assert denied.returncode != 0 and "no access" in denied.stderr, denied.stderr
    mine = subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(server.mine), "HEAD:refs/heads/dep"],
                          cwd=work, env=deployer_env, capture_output=True, text=True)
    assert ok.returncode == 0 and mine.returncode == 0, (ok.stderr, mine.stderr)
    clone = subprocess.run(["git", "clone", "-q", server.remote(server.theirs), str(tmp_path / "c")],
                           env=deployer_env, capture_output=True, text=True)
    assert clone.returncode != 0 and "no access" in clone.stderr
    new_app = unique("byci")
    created = subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(new_app), "main"], cwd=work,
                             env=deployer_env, capture_output=True, text=True)
    assert created.returncode != 0 and new_app not in server.cli("apps:list").stdout

    # Every git exchange over SSH is an audit event too: clones, and refused pushes and clones.
    assert subprocess.run(["git", "clone", "-q", server.remote(server.mine), str(tmp_path / "m")],
                          env=deployer_env, capture_output=True, text=True).returncode == 0

    def ssh_events(app: str) -> list[dict]:  # type: ignore[type-arg]
        out = server.cli("events", "--app", app, "--format", "json", "-n", "10000").stdout
        return [e for e in json.loads(out) if e["door"] == "ssh" and e["who"] == "ci"]

    def has(app: str, **want: str) -> bool:
        return any(all(e.get(k) == v for k, v in want.items()) for e in ssh_events(app))

    assert has(server.mine, action="git:fetch", result="ok")
    assert has(server.mine, action="git:push", result="ok", ref="refs/heads/dep")
    assert has(server.theirs, action="git:fetch", result="denied")
    assert has(server.theirs, action="git:push", result="denied")
    assert all(isinstance(e.get("duration"), float) for e in ssh_events(server.mine))


def assert_nowhere_logged(server: Server, *secrets: str) -> None:
    """None of `secrets` is in the events (as shown or as stored) or in any log of the server."""
    events = server.cli("events", "--format", "json", "-n", "10000").stdout
    assert json.loads(events)
    for log in [server.data / "events.log", server.base / "serve.log", *(server.data / "logs").rglob("*.log")]:
        text = log.read_text(errors="replace")
        for secret in secrets:
            assert secret not in events and secret not in text, log


def test_secrets_never_echoed_or_logged(server) -> None:
    server.ssh("config:set", "--no-restart", server.mine, "TOKEN=very-secret-123")
    # Reading secrets is audited too (who read them, through which door), without the values.
    assert "very-secret-123" in server.ssh("config:show", server.mine, key=server.deployer_key).stdout
    events = json.loads(server.cli("events", "--app", server.mine, "--format", "json").stdout)
    assert any(e["action"] == "config:show" and e["who"] == "ci" and e["door"] == "ssh" for e in events), events
    assert_nowhere_logged(server, "very-secret-123")


# -- git over HTTP: the same matrix with tokens --------------------------------------------------------------
def http_url(server: Server, app: str, who: str) -> str:
    _, token = server.tokens[who]
    return f"http://{f'user:{token}@' if token else ''}127.0.0.1:{server.http_port}/git/{app}.git"


def http_status(server: Server, app: str, who: str, service: str) -> int:
    """The status of the ref advertisement, the first request of every clone and push."""
    _, token = server.tokens[who]
    headers = {"Authorization": "Basic " + base64.b64encode(f"user:{token}".encode()).decode()} if token else {}
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("GET", f"/git/{app}.git/info/refs?service={service}", headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def refs(server: Server, app: str) -> str:
    return server.git("ls-remote", server.remote(app), cwd=server.base, check=True).stdout


# (token, app, what, HTTP status of the door): 200 = allowed
HTTP_MATRIX = [
    ("admin", "mine", "clone", 200), ("admin", "theirs", "clone", 200),
    ("admin", "mine", "push", 200), ("admin", "theirs", "push", 200),
    ("deployer", "mine", "clone", 200), ("deployer", "mine", "push", 200),
    ("deployer", "theirs", "clone", 403), ("deployer", "theirs", "push", 403),
    ("wrong", "mine", "clone", 401), ("wrong", "mine", "push", 401),
    ("none", "mine", "clone", 401), ("none", "mine", "push", 401),
]


@pytest.mark.parametrize(("who", "which", "what", "status"), HTTP_MATRIX)
def test_http_door_follows_the_same_rules(server, tmp_path, who, which, what, status) -> None:
    app = getattr(server, which)
    service = "git-upload-pack" if what == "clone" else "git-receive-pack"
    assert http_status(server, app, who, service) == status
    before = refs(server, app)
    if what == "clone":
        res = server.git("clone", "-q", http_url(server, app, who), str(tmp_path / "c"), cwd=tmp_path)
        cloned = res.returncode == 0 and server.git("rev-parse", "HEAD", cwd=tmp_path / "c").stdout.strip()
        if status == 200:
            assert cloned and cloned in before, res.stderr
    else:
        branch = unique(f"http-{who}")
        work = server.app_repo(unique("h"))
        res = server.git("push", "-o", "skip-deploy", http_url(server, app, who), f"HEAD:refs/heads/{branch}",
                         cwd=work)
        if status == 200:
            assert res.returncode == 0, res.stderr
            assert f"refs/heads/{branch}" in refs(server, app)
    if status != 200:
        assert res.returncode != 0
        assert {403: "403", 401: "Authentication failed" if who == "wrong" else "could not read Username"}[
            status] in res.stderr, res.stderr
        assert refs(server, app) == before


def test_http_door_is_audited_without_the_token(server, tmp_path) -> None:
    deployer, token = server.tokens["deployer"]
    mine, theirs = server.mine, server.theirs
    assert server.git("clone", "-q", http_url(server, mine, "deployer"), str(tmp_path / "c"), cwd=tmp_path,
                      ).returncode == 0
    branch = unique("audited")
    assert server.git("push", "-o", "skip-deploy", http_url(server, mine, "deployer"), f"HEAD:refs/heads/{branch}",
                      cwd=tmp_path / "c").returncode == 0
    assert server.git("clone", "-q", http_url(server, theirs, "deployer"), str(tmp_path / "t"),
                      cwd=tmp_path).returncode != 0
    assert server.git("ls-remote", http_url(server, mine, "wrong"), cwd=tmp_path).returncode != 0

    def events(app: str) -> list[dict]:  # type: ignore[type-arg]
        out = server.cli("events", "--app", app, "--format", "json", "-n", "10000").stdout
        return [e for e in json.loads(out) if e["door"] == "http"]

    def has(app: str, **want: str) -> bool:
        return any(all(e.get(k) == v for k, v in want.items()) for e in events(app))

    assert has(mine, action="git:fetch", who=deployer, result="ok", command=f"git-upload-pack {mine}")
    assert has(mine, action="git:push", who=deployer, result="ok", ref=f"refs/heads/{branch}")
    assert has(theirs, action="git:fetch", who=deployer, result="denied")
    assert has(mine, action="git:fetch", who="(unknown token)", result="denied", reason="unknown token")
    assert all(isinstance(e.get("duration"), float) for e in events(mine) if e["action"] == "git:fetch")
    assert_nowhere_logged(server, *(t for _, t in server.tokens.values() if t))

"""Storage mounts end to end, with a real `pushdock serve`, the real ssh and git clients, Docker and nginx.

The sample app (tests/apps/storage-web) runs as uid 32767, not root, and writes /data/NAME on request; its
Procfile `release:` command appends to /data/release.log. A file it writes into a storage directory survives a
redeploy, a rollback and a rename, `run` and the release phase see the mount, a mount change is a new release
that drops no request, and bad input or a role's refusal is one line that changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time

import docker
import pytest

from tests.harness import Server, unique

pytestmark = [pytest.mark.docker, pytest.mark.zero_downtime]  # counts failed requests under load: runs alone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("storage")
    srv = Server(base).start()
    srv.add_key()
    srv.deployer_key = srv.new_key("deployer")
    yield srv
    srv.stop()


def mounts(server: Server, app: str, key=None) -> list[dict]:
    return json.loads(server.ssh("storage:list", app, "--format", "json", key=key).stdout)


def releases(server: Server, app: str) -> list[dict]:
    return json.loads(server.cli("releases", app, "--format", "json").stdout)


def one_line_error(cp: subprocess.CompletedProcess[str], text: str, code: int | None = None) -> None:
    assert cp.returncode != 0 and (code is None or cp.returncode == code), (cp.returncode, cp.stderr)
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert text in cp.stderr, cp.stderr


def web_binds(app: str) -> list[str]:
    found = docker.from_env().containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})
    assert len(found) == 1, [c.name for c in found]
    return found[0].attrs["HostConfig"]["Binds"] or []


def test_a_file_in_a_mount_survives_redeploy_rollback_and_rename(server) -> None:
    app, name = unique("st"), unique("data")
    host = server.data / "storage" / name
    server.cli("apps:create", app)
    t0 = time.monotonic()
    out = server.ssh("storage:ensure-directory", name)
    print(f"\nstorage:ensure-directory over ssh: {time.monotonic() - t0:.2f}s")
    assert out.stderr == "" and str(host) in out.stdout
    assert (os.stat(host).st_uid, os.stat(host).st_gid) == (32767, 32767)  # the app's user, not root
    out = server.ssh("storage:mount", app, f"{name}:/data")
    assert out.stderr == "" and "the app is not deployed yet" in out.stdout

    work = server.app_repo(app, sample="storage-web")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert (host / "release.log").read_text() == "release v1 as 32767\n"  # the release phase saw the mount
    assert server.get(app, "/write/hello?kept%20data") == (200, "written")
    assert (host / "hello").read_text() == "kept data\n" and os.stat(host / "hello").st_uid == 32767
    assert web_binds(app) == [f"{host}:/data:rw"]
    run = server.ssh("run", app, "cat", "/data/hello")
    assert (run.returncode, run.stdout) == (0, "kept data\n"), run.stderr

    server.commit(work, "redeploy", {"body.txt": "second\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert server.get(app) == (200, "second") and server.get(app, "/read/hello") == (200, "kept data")
    server.ssh("releases:rollback", app, "v1")
    assert server.get(app) == (200, "storage app") and server.get(app, "/read/hello") == (200, "kept data")
    assert releases(server, app)[0]["version"] == 3
    assert mounts(server, app) == [{"host_path": str(host), "container_path": "/data", "volume_options": "",
                                    "source": name, "kind": "directory"}]

    # A second mount, read-only, under load: a new release, no request dropped, the release phase sees it.
    more = unique("more")
    server.ssh("storage:ensure-directory", more, "--chown", "root")
    (server.data / "storage" / more / "motd").write_text("read only\n")
    with server.load(app, threads=2, max_seconds=90) as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        out = server.ssh("storage:mount", app, f"{more}:/app/more:ro")
        took = time.monotonic() - t0
        time.sleep(0.5)
    print(f"\nstorage:mount on a live app (new release, release phase, swap) under load: {took:.2f}s, "
          f"{load.result.requests} requests, {load.result.failed} failed")
    assert out.stderr == "" and "Released v4" in out.stdout, out.stdout
    assert load.result.requests > 20 and load.result.failed == 0, load.result.errors
    assert (host / "release.log").read_text().splitlines()[-1] == "release v4 as 32767"
    assert sorted(web_binds(app)) == sorted([f"{host}:/data:rw", f"{server.data}/storage/{more}:/app/more:ro"])
    assert server.ssh("run", app, "cat", "/app/more/motd").stdout == "read only\n"
    assert server.ssh("run", app, "touch", "/app/more/x", check=False).returncode != 0
    assert releases(server, app)[0]["why"] == f"storage:mount {more}:/app/more:ro"

    # A mount the app cannot start with (it hides server.py) fails as a whole: the old release keeps serving.
    bad = server.ssh("storage:mount", app, "/etc/hostname:/app/server.py", check=False)
    assert bad.returncode != 0 and "did not start" in bad.stderr, bad.stderr
    assert [m["container_path"] for m in mounts(server, app)] == ["/data", "/app/more"]
    assert server.get(app, "/read/hello") == (200, "kept data")

    # Every change is recorded: in refs/meta/config and in the audit log.
    cfg = server.base / f"cfg-{app}"
    server.git("init", "-q", str(cfg), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=cfg, check=True)
    toml = server.git("show", "FETCH_HEAD:pushdock.toml", cwd=cfg, check=True).stdout
    assert f'mounts = ["{name}:/data", "{more}:/app/more:ro"]' in toml
    log = server.git("log", "--format=%s", "FETCH_HEAD", cwd=cfg, check=True).stdout
    assert f"storage:mount {more}:/app/more:ro" in log and f"storage:mount {name}:/data" in log
    events = json.loads(server.cli("events", "-n", "200", "--format", "json").stdout)
    assert [e["result"] for e in events if e["action"] == "storage:mount" and e["app"] == app] == ["ok", "ok",
                                                                                                    "exit 1"]

    server.ssh("storage:unmount", app, f"{more}:/app/more")
    assert web_binds(app) == [f"{host}:/data:rw"]
    assert (server.data / "storage" / more / "motd").exists()  # unmounting never deletes data

    # apps:rename carries the mounts; apps:destroy keeps the directory and its files (as Dokku does).
    renamed = unique("st2")
    server.cli("apps:rename", app, renamed)
    assert server.ssh("run", renamed, "cat", "/data/hello").stdout == "kept data\n"
    assert [m["source"] for m in mounts(server, renamed)] == [name]
    server.cli("apps:destroy", renamed, "--force")
    assert (host / "hello").read_text() == "kept data\n"


def test_bad_input_is_one_line_and_changes_nothing(server) -> None:
    app, name = unique("sb"), unique("data")
    server.cli("apps:create", app)
    server.ssh("storage:ensure-directory", name)
    server.ssh("storage:mount", app, f"{name}:/data")
    before = mounts(server, app)
    storage_dirs = sorted(p.name for p in (server.data / "storage").iterdir())
    for args, text, code in [
        (("storage:ensure-directory", "../up"), "invalid storage directory name '../up'", 2),
        (("storage:ensure-directory", "a/b"), "invalid storage directory name 'a/b'", 2),
        (("storage:ensure-directory", ".hidden"), "invalid storage directory name '.hidden'", 2),
        (("storage:ensure-directory", "ok", "--chown", "bob"), "--chown must be herokuish, root, false or UID", 2),
        (("storage:ensure-directory", "ok", "--chown", "1:2:3"), "--chown must be herokuish, root, false or UID", 2),
        (("storage:mount", "nope-app", f"{name}:/x"), "app nope-app does not exist", 1),
        (("storage:mount", app, f"{name}:/"), "container path / may not be mounted over", 2),
        (("storage:mount", app, f"{name}:/app"), "container path /app may not be mounted over", 2),
        (("storage:mount", app, f"{name}:/app/"), "container path /app may not be mounted over", 2),
        (("storage:mount", app, f"{name}:/proc"), "container path /proc is inside /proc", 2),
        (("storage:mount", app, f"{name}:/etc/ssl"), "container path /etc/ssl is inside /etc", 2),
        (("storage:mount", app, f"{name}:/dev/shm"), "container path /dev/shm is inside /dev", 2),
        (("storage:mount", app, f"{name}:/sys"), "container path /sys is inside /sys", 2),
        (("storage:mount", app, f"{name}:relative"), "container path 'relative' must be an absolute path", 2),
        (("storage:mount", app, f"{name}:/a/../etc"), "container path '/a/../etc' must not contain '.' or '..'", 2),
        (("storage:mount", app, "./here:/x"), "relative paths are not accepted", 2),
        (("storage:mount", app, "../up:/x"), "relative paths are not accepted", 2),
        (("storage:mount", app, "a/b:/x"), "relative paths are not accepted", 2),
        (("storage:mount", app, "/tmp/../etc:/x"), "host path '/tmp/../etc' must not contain '.' or '..'", 2),
        (("storage:mount", app, "nosuch:/x"), "no storage directory nosuch: create it with storage:ensure", 1),
        (("storage:mount", app, "/no/such/path:/x"), "host path /no/such/path does not exist", 1),
        (("storage:mount", app, f"{name}:/x:rx"), "expected SOURCE:CONTAINER_PATH", 2),
        (("storage:mount", app, name), "expected SOURCE:CONTAINER_PATH", 2),
        (("storage:mount", app, f"{name}:/data"), f"{name}:/data is mounted already", 1),
        (("storage:mount", app, f"{name}:/data:ro"), f"{name}:/data is mounted already", 1),
        (("storage:mount", app, "/tmp:/data"), "/data is already the mount point of", 1),
        (("storage:mount", app), "Missing argument", 2),
        (("storage:unmount", app, f"{name}:/elsewhere"), f"{app} has no mount {name}:/elsewhere", 1),
        (("storage:unmount", app, "nosuch:/data"), f"{app} has no mount nosuch:/data", 1),
        (("storage:unmount", app, "just-a-name"), "expected SOURCE:CONTAINER_PATH", 2),
        (("storage:list", "nope-app"), "app nope-app does not exist", 1),
        (("storage:report", "nope-app"), "app nope-app does not exist", 1),
        (("storage:list", app, "--format", "yaml"), "Invalid value for '--format'", 2),
    ]:
        one_line_error(server.ssh(*args, check=False), text, code)
    assert mounts(server, app) == before and releases(server, app) == []
    assert sorted(p.name for p in (server.data / "storage").iterdir()) == storage_dirs


def test_host_paths_are_admin_only_and_deployers_mount_only_their_own_data(server, tmp_path) -> None:
    mine, theirs = unique("dep"), unique("oth")
    for app in (mine, theirs):
        server.cli("apps:create", app)
    server.add_key(unique("ci"), role="deployer", apps=mine, key=server.deployer_key)
    dep = server.deployer_key
    shared, own = unique("shared"), unique("own")
    server.ssh("storage:ensure-directory", shared)
    server.ssh("storage:mount", theirs, f"{shared}:/data")
    server.ssh("storage:unmount", theirs, f"{shared}:/data")  # unmounted, but it still holds their data

    one_line_error(server.ssh("storage:ensure-directory", own, key=dep, check=False), "admin only", 13)
    one_line_error(server.ssh("storage:mount", mine, f"{tmp_path}:/host", key=dep, check=False),
                   "may not mount host paths: admin only", 13)
    one_line_error(server.ssh("storage:mount", mine, f"{shared}:/data", key=dep, check=False),
                   f"storage directory {shared} holds data of an app", 13)
    one_line_error(server.ssh("storage:mount", theirs, f"{shared}:/data", key=dep, check=False),
                   f"has no access to app {theirs}", 13)
    one_line_error(server.ssh("storage:list", theirs, key=dep, check=False), f"has no access to app {theirs}", 13)

    server.ssh("storage:ensure-directory", own)
    assert server.ssh("storage:mount", mine, f"{own}:/data", key=dep).stderr == ""
    # Dokku's docs write the directory's full path: that is the same named directory, so a deployer may use it.
    assert server.ssh("storage:mount", mine, f"{server.data}/storage/{own}:/more", key=dep).stderr == ""
    server.ssh("storage:mount", mine, f"{tmp_path}:/host")  # an admin may
    one_line_error(server.ssh("storage:unmount", mine, f"{tmp_path}:/host", key=dep, check=False),
                   "may not mount host paths: admin only", 13)
    assert [m["source"] for m in mounts(server, mine, key=dep)] == [own, own, str(tmp_path)]

    # The same rules on a push to refs/meta/config.
    work = server.base / f"cfg-{mine}"
    server.git("init", "-q", str(work), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(mine), "refs/meta/config", cwd=work, check=True)
    server.git("checkout", "-q", "FETCH_HEAD", cwd=work, check=True)
    toml = work / "pushdock.toml"
    original = toml.read_text()
    as_deployer = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(dep))}

    def push(text: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        toml.write_text(text)
        server.commit(work, "mounts")
        return subprocess.run(["git", "push", server.remote(mine), "HEAD:refs/meta/config"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)

    line = f'mounts = ["{own}:/data", "{own}:/more", "{tmp_path}:/host"]'
    assert line in original
    for text, reason in [
        (original.replace(line, f'mounts = ["{own}:/data", "{own}:/more", "{tmp_path}:/host", "/etc:/x"]'),
         "pushdock.toml: storage.mounts: "),
        (original.replace(line, f'mounts = ["{own}:/data", "{own}:/more"]'), "may not mount host paths: admin only"),
        (original.replace(line, f'mounts = ["{own}:/data", "{own}:/more", "{tmp_path}:/host", "{shared}:/s"]'),
         f"storage directory {shared} holds data of an app"),
        (original.replace(line, f'mounts = ["{own}:/data", "{own}:/proc"]'), "container path /proc is inside /proc"),
        (original.replace(line, f'mounts = ["{own}:/data", "{own}:/data"]'), "/data is mounted twice"),
    ]:
        cp = push(text, as_deployer)
        assert cp.returncode != 0 and reason in cp.stderr, cp.stderr
        server.git("reset", "-q", "--hard", "HEAD~1", cwd=work, check=True)
    assert [m["source"] for m in mounts(server, mine)] == [own, own, str(tmp_path)]
    cp = push(original.replace(line, f'mounts = ["{own}:/data", "{tmp_path}:/host"]'), as_deployer)
    assert cp.returncode == 0, cp.stderr
    assert [m["container_path"] for m in mounts(server, mine)] == ["/data", "/host"]
    cp = push(original.replace(line, f'mounts = ["{own}:/data"]'), server.git_env)  # an admin's push may
    assert cp.returncode == 0, cp.stderr
    assert [m["container_path"] for m in mounts(server, mine)] == ["/data"]
    events = json.loads(server.cli("events", "-n", "100", "--format", "json").stdout)
    pushed = [e for e in events if e["action"] == "storage:mounts" and e["app"] == mine]
    assert [(e["added"], e["removed"]) for e in pushed] == [
        ([], [f"{own}:/more"]), ([], [f"{tmp_path}:/host"])]

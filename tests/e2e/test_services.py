"""PostgreSQL and Redis services end to end: a real `pushdock serve`, ssh, git, Docker and nginx.

One server and ONE postgres service for the module (the service images are built once per machine, on the first
`postgres:create`/`redis:create`). The sample app (tests/apps/postgres-web) is built FROM the postgres service
image for its `psql`, runs as uid 32767 and keeps rows in DATABASE_URL; its release phase creates the table, so
the release-phase container reaches the service too."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import docker
import pytest

from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.settings import Settings
from services import backups, model
from tests.harness import Server, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("services")
    srv = Server(base).start()
    srv.add_key()
    srv.deployer_key = srv.new_key("deployer")
    yield srv
    srv.stop()


def one_line_error(cp: subprocess.CompletedProcess, text: str, code: int | None = None) -> None:
    assert cp.returncode != 0 and (code is None or cp.returncode == code), (cp.returncode, cp.stderr, cp.stdout)
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert text in cp.stderr, cp.stderr


def env_of(server: Server, app: str) -> dict:
    return json.loads(server.cli("config:export", app, "--format", "json").stdout)


def test_postgres_rows_survive_redeploy_restarts_and_round_trip(server) -> None:
    app, db = unique("pg"), unique("db")
    t0 = time.monotonic()
    out = server.cli("postgres:create", db, timeout=900)
    created = time.monotonic() - t0
    assert out.stderr == "" and f"service {db} created" in out.stdout, out.stdout
    one_line_error(server.cli("postgres:create", db, check=False), "exists already", 1)

    # the service: no host port, a private network, a named volume, restarted unless stopped
    c = docker.from_env().containers.get(json.loads(server.cli("postgres:info", db, "--format", "json").stdout)[
        "container"])
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert not c.attrs["NetworkSettings"]["Ports"] and list(c.attrs["NetworkSettings"]["Networks"]) == [c.name]
    assert [m["Type"] for m in c.attrs["Mounts"]] == ["volume"]
    creds = server.data / "services" / "postgres" / db / "credentials"
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    password = json.loads(creds.read_text())["password"]
    assert password not in c.attrs["Config"]["Cmd"] if c.attrs["Config"]["Cmd"] else True

    work = server.app_repo(app, sample="postgres-web")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    t0 = time.monotonic()
    out = server.ssh("postgres:link", db, app)
    linked = time.monotonic() - t0
    print(f"\npostgres:create {created:.1f}s, postgres:link (a release, zero downtime) {linked:.1f}s")
    assert out.stderr == "" and "as DATABASE_URL" in out.stdout and password not in out.stdout
    assert env_of(server, app)["DATABASE_URL"] == f"postgres://postgres:{password}@pushdock-postgres-{db}:5432/{db}"
    assert server.get(app, "/write?first") == (200, "written")
    one_line_error(server.ssh("postgres:link", db, app, check=False), "already linked", 1)
    one_line_error(server.ssh("postgres:destroy", db, "--force", check=False), f"linked to {app}", 1)

    server.commit(work, "redeploy", {"body.txt": "second\n"})
    assert server.push(work, app).returncode == 0
    assert server.get(app) == (200, "second") and server.get(app, "/read") == (200, "first")
    server.ssh("ps:restart", app)
    server.ssh("postgres:restart", db)
    assert server.get(app, "/read") == (200, "first")
    server.stop_serve()  # the service is not serve's: it keeps running, and the app finds it after
    assert docker.from_env().containers.get(c.name).status == "running"
    server.start()
    assert server.get(app, "/read") == (200, "first")

    dump = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"postgres:export {db}"],
                          capture_output=True, timeout=60, env=server.git_env)
    assert dump.returncode == 0 and dump.stderr == b"" and dump.stdout.startswith(b"PGDMP"), dump.stderr
    assert server.get(app, "/write?second") == (200, "written")
    assert server.get(app, "/read") == (200, "first,second")
    imp = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"postgres:import {db}"],
                         input=dump.stdout, capture_output=True, timeout=60, env=server.git_env)
    assert imp.returncode == 0, imp.stderr
    assert server.get(app, "/read") == (200, "first")  # the dump's state, whole
    sql = server.cli("postgres:connect", db, input="select count(*) from notes;\n")
    assert "1" in sql.stdout.split(), sql.stdout
    # ssh -tt: psql on a terminal (run's pty path)
    shell = subprocess.run([*server.ssh_argv(server.key), "-tt", "pushdock@127.0.0.1", f"postgres:connect {db}"],
                           input="select 6 * 7 as answer;\n\\q\n", capture_output=True, text=True, timeout=60,
                           env=server.git_env)
    assert shell.returncode == 0 and "42" in shell.stdout and f"{db}=#" in shell.stdout, shell

    # a backup proven by a restore into a throwaway container; drop the table, restore: the rows are back
    t0 = time.monotonic()
    out = server.ssh("postgres:backup", db, "--verify")
    print(f"postgres:backup --verify {time.monotonic() - t0:.1f}s")
    made = json.loads(server.ssh("postgres:backups", db, "--format", "json").stdout)
    assert [b["verified"] for b in made] == ["yes"] and made[0]["path"] in out.stdout and str(made[0]["size"]) in out.stdout
    path = Path(made[0]["path"])
    assert path.parent == server.data / "backups" / "postgres" / db and oct(path.stat().st_mode & 0o777) == "0o600"
    server.cli("postgres:connect", db, input="drop table notes;\n")
    assert server.get(app, "/read")[0] == 500
    assert server.ssh("postgres:restore", db, made[0]["file"]).stderr == ""
    assert server.get(app, "/read") == (200, "first")
    one_line_error(server.ssh("postgres:restore", db, "../../etc/passwd", check=False), "not a path", 2)
    # a truncated dump fails verification loudly, and is listed as failed
    cut = path.with_name(path.name.replace(".dump", "-cut.dump"))
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ctx = Context(Settings(data_dir=server.data))
    service = model.get(ctx.state, "postgres", db)
    truncated = backups.Backup(cut.name, cut, cut.stat().st_size, time.time(), "no")
    with pytest.raises(PushdockError, match=r"verification of .*-cut\.dump failed"):
        backups.verify_file(ctx, ctx.bus.lookup("services", "postgres"), service, truncated, {"public.notes": 1})
    assert [b.verified.startswith("failed: ") for b in backups.listed(ctx, service)] == [False, True]
    # a schedule on serve's timer (the timer-jobs trigger): a tick makes a verified backup and keeps the newest one
    out = server.ssh("postgres:backup-schedule", db, "@daily", "--keep", "1")
    assert out.stderr == "" and "'0 0 * * *', keeping 1" in out.stdout
    jobs = {k: v for part in ctx.bus.call("timer_jobs", ctx=ctx) for k, v in part.items()}
    backup_jobs = [name for name in jobs if name.startswith("postgres-backup:")]  # beside letsencrypt's renewal
    assert backup_jobs == [f"postgres-backup:{db}"] and jobs[f"postgres-backup:{db}"][0] == "0 0 * * *"
    jobs[f"postgres-backup:{db}"][1]()
    kept = backups.listed(ctx, service)
    assert len(kept) == 1 and kept[0].verified == "yes" and not path.exists() and not cut.exists()
    one_line_error(server.ssh("postgres:backup-schedule", db, "61 * * * *", check=False), "invalid schedule", 2)
    server.ssh("postgres:backup-unschedule", db)
    left = [name for part in ctx.bus.call("timer_jobs", ctx=ctx) for name in part]
    assert not [name for name in left if name.startswith("postgres-backup:")], left  # letsencrypt's renewal stays

    # a deployer of the app sees the service without its credentials; host-wide verbs are refused
    server.add_key("dep", role="deployer", apps=app, key=server.deployer_key)
    info = json.loads(server.ssh("postgres:info", db, "--format", "json", key=server.deployer_key).stdout)
    assert "dsn" not in info and info["links"] == [f"{app} (DATABASE_URL)"]
    listed = json.loads(server.ssh("postgres:list", "--format", "json", key=server.deployer_key).stdout)
    assert [r["name"] for r in listed] == [db]
    one_line_error(server.ssh("postgres:create", unique("db"), key=server.deployer_key, check=False), "admin only", 13)
    one_line_error(server.ssh("postgres:destroy", db, "--force", key=server.deployer_key, check=False), "admin only",
                   13)
    assert password in server.ssh("postgres:info", db).stdout  # an admin's

    out = server.ssh("postgres:unlink", db, app)
    assert out.stderr == "" and "DATABASE_URL" not in env_of(server, app)
    # unlinked, the service is no longer the deployer's
    one_line_error(server.ssh("postgres:info", db, key=server.deployer_key, check=False), "linked to none", 13)
    one_line_error(server.ssh("postgres:export", db, key=server.deployer_key, check=False), "linked to none", 13)
    assert json.loads(server.ssh("postgres:list", "--format", "json", key=server.deployer_key).stdout) == []
    out = server.ssh("postgres:destroy", db, "--force")
    assert out.stderr == "" and not creds.exists()
    assert not docker.from_env().containers.list(all=True, filters={"name": c.name})
    assert not docker.from_env().volumes.list(filters={"name": c.name})


@pytest.mark.parametrize("args, text, code", [
    (("postgres:create", "Bad_Name"), "invalid postgres service name", 2),
    (("postgres:create",), "Missing argument", 2),
    (("postgres:link", "nosuch", "nosuchapp"), "nosuchapp", 1),
    (("postgres:link", "Bad!", "x"), "invalid postgres service name", 2),
    (("postgres:unlink", "nosuch", "x"), "", 1),
    (("postgres:info", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:info", "nosuch", "--format", "yaml"), "Invalid value", 2),
    (("postgres:list", "--format", "xml"), "Invalid value", 2),
    (("postgres:connect", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:export", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:import", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:logs", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:logs", "x", "-n", "0"), "Invalid value", 2),
    (("postgres:restart", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:destroy", "nosuch"), "add --force", 2),
    (("postgres:destroy", "nosuch", "--force"), "no postgres service nosuch", 1),
    (("postgres:destroy", "../x", "--force"), "invalid postgres service name", 2),
    (("redis:link", "nosuch", "x", "--alias", "bad-alias"), "invalid alias", 2),
    (("redis:info", "nosuch"), "no redis service nosuch", 1),
    (("postgres:nosuch",), "unexpected extra argument", 2),
    (("postgres:backup", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:backup", "Bad!", "--verify"), "invalid postgres service name", 2),
    (("postgres:backups", "nosuch", "--format", "yaml"), "Invalid value", 2),
    (("postgres:restore", "nosuch", "x.dump"), "no postgres service nosuch", 1),
    (("postgres:restore", "nosuch"), "Missing argument", 2),
    (("redis:backup", "x"), "no redis service x", 1),  # redis has backups too (test_service_data.py)
    (("postgres:backup-schedule", "nosuch", "@daily"), "no postgres service nosuch", 1),
    (("postgres:backup-schedule", "nosuch", "@daily", "--keep", "0"), "Invalid value", 2),
    (("postgres:backup-unschedule", "nosuch"), "no postgres service nosuch", 1),
])
def test_bad_input_is_one_line(server, args, text, code) -> None:
    cp = server.ssh(*args, check=False)
    assert cp.returncode == code, (cp.returncode, cp.stderr)
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1 and text in cp.stderr, cp.stderr
    assert cp.stdout == "" or "Usage" not in cp.stdout


def test_redis_is_password_protected_and_reached_over_its_network(server) -> None:
    app, name = unique("rd"), unique("cache")
    server.cli("redis:create", name, timeout=900)
    server.cli("apps:create", app)
    server.ssh("redis:link", name, app)  # before the first deploy: stored for it
    url = env_of(server, app)["REDIS_URL"]
    password = url.split(":")[2].split("@")[0]
    assert url == f"redis://:{password}@pushdock-redis-{name}:6379" and len(password) >= 24
    c = docker.from_env().containers.get(json.loads(server.cli("redis:info", name, "--format", "json").stdout)[
        "container"])
    code, out = c.exec_run(["redis-cli", "ping"])
    assert b"NOAUTH" in out  # no password, no data
    cli = server.cli("redis:connect", name, input="set k v\nget k\n")
    assert cli.stdout.split() == ["OK", "v"], cli.stdout
    one_line_error(server.ssh("redis:destroy", name, "--force", check=False), "linked to", 1)
    server.ssh("redis:unlink", name, app)
    server.ssh("redis:destroy", name, "--force")


def test_an_app_named_like_the_service_comes_and_goes_without_touching_it(server) -> None:
    """apps:rename and apps:destroy of an app named like a postgres service: the service's record and credentials
    were under the app's glob (data/*/APP) before they had a tree of their own, so info and connect failed."""
    name, other = unique("twin"), unique("twin")
    server.cli("postgres:create", name, timeout=900)
    info = json.loads(server.cli("postgres:info", name, "--format", "json").stdout)
    server.ssh("apps:create", name)
    server.ssh("apps:rename", name, other)
    server.ssh("apps:create", name)
    out = server.ssh("apps:destroy", name, "--force")
    assert out.stderr == "", out.stderr
    assert json.loads(server.cli("postgres:info", name, "--format", "json").stdout) == info
    assert [s["name"] for s in json.loads(server.cli("postgres:list", "--format", "json").stdout)].count(name) == 1
    assert other not in server.cli("postgres:list").stdout
    sql = server.cli("postgres:connect", name, input="select 6 * 7;\n")  # the credentials still open it
    assert "42" in sql.stdout.split(), sql.stdout
    server.ssh("apps:destroy", other, "--force")
    server.ssh("postgres:destroy", name, "--force")
    assert name not in server.cli("postgres:list").stdout

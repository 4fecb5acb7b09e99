"""Data that survives, end to end: a buildpack Python app (herokuish, requirements.txt) with drivers from PyPI
(psycopg, redis-py) keeps rows in a PostgreSQL service and a key in a Redis service through redeploys, restarts
and `pushdock serve` restarts; backups are restored and proven; services are exposed on a host port; and a
swarm app reaches a linked service over its overlay network. A real `pushdock serve`, ssh, git, Docker, nginx.

The build reaches PyPI from inside the build container (the stack image carries the host's CA bundle)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest

from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.settings import Settings
from services import backups, model
from tests.harness import Server, swarm_mode, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("servicedata")).start()
    srv.add_key()
    yield srv
    srv.stop()


def one_line_error(cp: subprocess.CompletedProcess, text: str, code: int | None = None) -> None:
    assert cp.returncode != 0 and (code is None or cp.returncode == code), (cp.returncode, cp.stderr, cp.stdout)
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert text in cp.stderr, cp.stderr


def backups_of(server: Server, kind: str, name: str) -> list[dict]:
    return json.loads(server.ssh(f"{kind}:backups", name, "--format", "json").stdout)


def settled(server: Server, app: str, path: str, tries: int = 60) -> tuple[int, str]:
    """The answer, asked again while the app cannot resolve a service's host name: on the engine these tests
    share, Docker's embedded DNS was seen to miss names (`Name or service not known`) for a while around a
    `docker swarm init` or `leave` by another test run (dockerd's log has the swarm's control socket coming and
    going at those times); not a failure of pushdock's."""
    for _ in range(tries):
        got = server.get(app, path)
        if not (got[0] == 500 and "not known" in got[1]):
            return got
        time.sleep(0.5)
    return got


def truncated_copy(path: Path) -> Path:
    cut = path.with_name("cut-" + path.name)
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def test_buildpack_app_keeps_rows_and_keys_and_backups_bring_them_back(server) -> None:
    app, db, rd = unique("bpdata"), unique("db"), unique("rd")
    server.cli("postgres:create", db, timeout=900)
    server.cli("redis:create", rd, timeout=900)
    work = server.app_repo(app, sample="buildpack-services")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "Python app detected" in res.stderr and "Installing requirements.txt" in res.stderr
    assert settled(server, app, "/env/DATABASE_URL") == (200, "unset")
    for kind, name, var in (("postgres", db, "DATABASE_URL"), ("redis", rd, "REDIS_URL")):
        out = server.ssh(f"{kind}:link", name, app)
        assert out.stderr == "" and f"as {var}" in out.stdout, out
    assert settled(server, app, "/write?alpha") == (200, "written")
    assert settled(server, app, "/write?beta") == (200, "written")
    assert settled(server, app, "/set?colour=blue") == (200, "set")

    def still_there() -> None:
        assert settled(server, app, "/read") == (200, "alpha,beta")
        assert settled(server, app, "/get?colour") == (200, "blue")

    server.commit(work, "redeploy", {"body.txt": "second\n"})
    assert server.push(work, app).returncode == 0
    assert server.get(app) == (200, "second")
    still_there()
    server.ssh("ps:restart", app)
    still_there()
    server.stop_serve()
    server.start()
    still_there()

    # postgres: a verified backup; drop the table; restore: the rows are back
    out = server.ssh("postgres:backup", db, "--verify")
    assert out.stderr == "" and out.stdout.rstrip().endswith("verified"), out
    made = backups_of(server, "postgres", db)[-1]
    server.cli("postgres:connect", db, input="drop table notes;\n")
    assert settled(server, app, "/read") == (200, "")  # the app makes the table again, empty
    assert server.ssh("postgres:restore", db, made["file"]).stderr == ""
    still_there()

    # redis: a verified backup (a gzipped RDB snapshot); the keys go; restore: they are back
    out = server.ssh("redis:backup", rd, "--verify")
    assert out.stderr == "" and out.stdout.rstrip().endswith("verified"), out
    made_rd = backups_of(server, "redis", rd)[-1]
    assert made_rd["file"].endswith(".rdb.gz") and made_rd["verified"] == "yes"
    path = Path(made_rd["path"])
    assert path.parent == server.data / "backups" / "redis" / rd and oct(path.stat().st_mode & 0o777) == "0o600"
    server.cli("redis:connect", rd, input="flushall\n")
    assert settled(server, app, "/get?colour") == (200, "")
    out = server.ssh("redis:restore", rd, made_rd["file"])
    assert out.stderr == "" and "restored" in out.stdout
    still_there()
    one_line_error(server.ssh("redis:restore", rd, "../x.rdb.gz", check=False), "not a path", 2)
    one_line_error(server.ssh("redis:restore", rd, "nosuch.rdb.gz", check=False), "has no backup", 1)

    # --verify catches a truncated dump and a truncated snapshot, loudly, and lists them as failed
    ctx = Context(Settings(data_dir=server.data))
    for kind, name, made_ in (("postgres", db, made), ("redis", rd, made_rd)):
        service = model.get(ctx.state, kind, name)
        cut = truncated_copy(Path(made_["path"]))
        truncated = backups.Backup(cut.name, cut, cut.stat().st_size, time.time(), "no")
        with pytest.raises(PushdockError, match=r"verification of cut-.* failed"):
            backups.verify_file(ctx, ctx.bus.lookup("services", kind), service, truncated, {})
        assert backups.listed(ctx, service)[-1].verified.startswith("failed: ")
    still_there()  # nothing of that touched the live services

    # export / import of redis (a raw RDB snapshot), as postgres' export / import do with a dump
    dump = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"redis:export {rd}"],
                          capture_output=True, timeout=60, env=server.git_env)
    assert dump.returncode == 0 and dump.stderr == b"" and dump.stdout.startswith(b"REDIS"), dump.stderr
    assert settled(server, app, "/set?colour=green") == (200, "set")
    imp = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"redis:import {rd}"],
                         input=dump.stdout, capture_output=True, timeout=120, env=server.git_env)
    assert imp.returncode == 0 and imp.stderr == b"", imp.stderr
    still_there()
    bad = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"redis:import {rd}"],
                         input=dump.stdout[:40], capture_output=True, timeout=120, env=server.git_env, text=False)
    assert bad.returncode == 1 and bad.stderr.decode().startswith("error: ") and b"not a valid RDB" in bad.stderr
    still_there()  # a bad snapshot is refused before the data is touched

    # a scheduled redis backup from serve's timer: verified, the newest kept
    server.ssh("redis:backup-schedule", rd, "@hourly", "--keep", "1")
    jobs = {k: v for part in ctx.bus.call("timer_jobs", ctx=ctx) for k, v in part.items()}
    jobs[f"redis-backup:{rd}"][1]()
    kept = backups.listed(ctx, model.get(ctx.state, "redis", rd))
    assert len(kept) == 1 and kept[0].verified == "yes"
    server.ssh("redis:backup-unschedule", rd)

    for kind, name in (("postgres", db), ("redis", rd)):
        server.ssh(f"{kind}:unlink", name, app)
        server.ssh(f"{kind}:destroy", name, "--force")


def port_open(port: int, address: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def redis_dbsize(port: int, password: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"AUTH {password}\r\nDBSIZE\r\n".encode())
        got = b""
        while got.count(b"\r\n") < 2:
            chunk = s.recv(100)
            if not chunk:
                break
            got += chunk
        return got


def test_expose_publishes_on_a_host_port_for_admins_only(server) -> None:
    db, rd = unique("xdb"), unique("xrd")
    server.cli("postgres:create", db, timeout=900)
    server.cli("redis:create", rd, timeout=900)
    server.cli("redis:connect", rd, input="set k v\n")
    out = server.ssh("redis:expose", rd)
    assert out.stderr == "" and "exposed on 127.0.0.1:" in out.stdout, out
    info = json.loads(server.ssh("redis:info", rd, "--format", "json").stdout)
    address, port = info["exposed"].rsplit(":", 1)
    password = info["dsn"].split(":")[2].split("@")[0]
    assert address == "127.0.0.1" and redis_dbsize(int(port), password) == b"+OK\r\n:1\r\n"  # the data stayed
    c = docker.from_env().containers.get(info["container"])
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    one_line_error(server.ssh("redis:expose", rd, check=False), "exposed on 127.0.0.1", 1)
    server.ssh("redis:restart", rd)  # a restart keeps the port
    assert redis_dbsize(int(port), password) == b"+OK\r\n:1\r\n"
    out = server.ssh("redis:unexpose", rd)
    assert out.stderr == "" and not port_open(int(port))
    assert json.loads(server.ssh("redis:info", rd, "--format", "json").stdout)["exposed"] == "no"
    one_line_error(server.ssh("redis:unexpose", rd, check=False), "is not exposed", 1)

    # postgres on a given address and port; the port then taken: refused in one line, nothing changed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    out = server.ssh("postgres:expose", db, f"127.0.0.1:{free}")
    assert out.stderr == "" and f"exposed on 127.0.0.1:{free}" in out.stdout
    assert port_open(free)
    with socket.create_connection(("127.0.0.1", free), timeout=5) as s:  # an SSLRequest: PostgreSQL answers N
        s.sendall(bytes.fromhex("0000000804d2162f"))
        assert s.recv(1) == b"N"
    assert "exposed:" in server.ssh("postgres:info", db).stdout
    server.ssh("postgres:unexpose", db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        one_line_error(server.ssh("postgres:expose", db, str(taken), check=False), "Address already in use", 1)
    assert json.loads(server.ssh("postgres:info", db, "--format", "json").stdout)["exposed"] == "no"
    assert server.cli("postgres:connect", db, input="select 1;\n").returncode == 0

    # admins only
    deployer = server.new_key("xdeployer")
    server.add_key("xdep", role="deployer", apps="nosuchapp", key=deployer)
    one_line_error(server.ssh("postgres:expose", db, key=deployer, check=False), "admin only", 13)
    one_line_error(server.ssh("redis:unexpose", rd, key=deployer, check=False), "admin only", 13)
    for kind, name in (("postgres", db), ("redis", rd)):
        server.ssh(f"{kind}:destroy", name, "--force")


@pytest.mark.parametrize("args, text, code", [
    (("postgres:expose", "nosuch"), "no postgres service nosuch", 1),
    (("postgres:expose", "Bad!"), "invalid postgres service name", 2),
    (("postgres:expose", "nosuch", "70000"), "[ADDRESS:]HOST_PORT", 2),
    (("postgres:expose", "nosuch", "localhost:5432"), "[ADDRESS:]HOST_PORT", 2),
    (("postgres:expose", "nosuch", "1.2.3.4:"), "[ADDRESS:]HOST_PORT", 2),
    (("redis:expose", "nosuch", "-1"), "", 2),
    (("redis:expose", "nosuch", "1", "2"), "unexpected extra argument", 2),
    (("redis:unexpose", "nosuch"), "no redis service nosuch", 1),
    (("redis:unexpose",), "Missing argument", 2),
    (("redis:backup", "nosuch"), "no redis service nosuch", 1),
    (("redis:backup", "Bad!", "--verify"), "invalid redis service name", 2),
    (("redis:backups", "nosuch", "--format", "yaml"), "Invalid value", 2),
    (("redis:restore", "nosuch", "x.rdb.gz"), "no redis service nosuch", 1),
    (("redis:restore", "nosuch"), "Missing argument", 2),
    (("redis:backup-schedule", "nosuch", "@daily"), "no redis service nosuch", 1),
    (("redis:backup-schedule", "nosuch", "@daily", "--keep", "0"), "Invalid value", 2),
    (("redis:backup-unschedule", "nosuch"), "no redis service nosuch", 1),
    (("redis:import", "nosuch"), "no redis service nosuch", 1),
])
def test_bad_input_is_one_line(server, args, text, code) -> None:
    cp = server.ssh(*args, check=False)
    assert cp.returncode == code, (cp.returncode, cp.stderr)
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1 and text in cp.stderr, cp.stderr


@pytest.mark.zero_downtime  # serial pass: turning swarm mode on and off disturbs other modules' container DNS
def test_a_swarm_app_reaches_a_linked_service(server) -> None:
    """Swarm tasks join only swarm-scoped networks: linking a swarm app gives the service an attachable overlay
    network, the service's container joins it under its host name, and the app's tasks (the web process and the
    release task, which makes the table) join it too."""
    app, db = unique("swdb"), unique("swdb")
    server.cli("postgres:create", db, timeout=900)
    with swarm_mode():
        try:
            server.cli("apps:create", app)
            server.cli("scheduler:set", app, "selected", "swarm")
            out = server.ssh("postgres:link", db, app)
            assert out.stderr == "" and "as DATABASE_URL" in out.stdout
            res = server.push(server.app_repo(app, sample="postgres-web"), app)
            assert res.returncode == 0, res.stderr
            assert settled(server, app, "/write?from-swarm") == (200, "written")
            assert settled(server, app, "/read") == (200, "from-swarm")
            info = json.loads(server.ssh("postgres:info", db, "--format", "json").stdout)
            nets = docker.from_env().containers.get(info["container"]).attrs["NetworkSettings"]["Networks"]
            overlay = f"{info['network']}-swarm"
            assert docker.from_env().networks.get(overlay).attrs["Driver"] == "overlay" and overlay in nets
            server.ssh("postgres:restart", db)  # a restarted service is still on the overlay
            assert settled(server, app, "/read") == (200, "from-swarm")
            server.ssh("postgres:unlink", db, app)
            server.ssh("postgres:destroy", db, "--force")
            for _ in range(60):  # a swarm network goes once the swarm has taken the removal in
                if not docker.from_env().networks.list(names=[overlay]):
                    break
                time.sleep(0.5)
            assert not docker.from_env().networks.list(names=[overlay])
        finally:
            server.cli("apps:destroy", app, "--force", check=False)

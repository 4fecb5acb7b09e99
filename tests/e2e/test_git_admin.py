"""Git as the admin interface, end to end: config pushes release with zero downtime, push options, and a
deploy over HTTP with a token. Real git, ssh, Docker and nginx; nothing is mocked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.harness import Server, http_get, unique

pytestmark = [pytest.mark.docker, pytest.mark.zero_downtime]  # counts failed requests under load: runs alone


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("gitadmin-e2e")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def deployed(server):
    app = unique("admin")
    work = server.app_repo(app)
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    return app, work


def config_checkout(server: Server, app: str) -> Path:
    work = server.base / f"config-{app}"
    if not work.exists():
        server.git("init", "-q", str(work), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=work, check=True)
    server.git("checkout", "-q", "FETCH_HEAD", cwd=work, check=True)
    return work


def test_config_push_is_a_release_with_zero_downtime(server, deployed) -> None:
    app, _ = deployed
    work = config_checkout(server, app)
    assert "web = 1" in (work / "pushdock.toml").read_text()
    (work / "env").write_text((work / "env").read_text() + "GREETING=hi there\n")
    sha = server.commit(work, "greet")
    with server.load(app, threads=2, max_seconds=90) as load:
        time.sleep(0.5)
        cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
        time.sleep(0.5)
    assert cp.returncode == 0, cp.stderr
    assert f"remote: -----> Applying refs/meta/config ({sha[:7]}): env GREETING" in cp.stderr
    assert "remote: -----> Released v2" in cp.stderr
    assert server.get(app, "/env/GREETING") == (200, "hi there")
    assert load.result.requests > 20
    assert load.result.failed == 0, load.result.errors
    releases = server.cli("releases", app).stdout
    assert f"refs/meta/config {sha[:7]}" in releases


def test_new_domains_alone_are_routed_without_a_release(server, deployed) -> None:
    app, _ = deployed
    before = server.cli("releases", app).stdout
    name = f"www.{app}.example.com"
    work = config_checkout(server, app)
    (work / "pushdock.toml").write_text((work / "pushdock.toml").read_text().replace(
        "domains = []", f'domains = ["{name}"]'))
    server.commit(work, "a domain")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert f"remote: -----> Routed {app} to: {app}.localhost {name}" in cp.stderr
    assert http_get(server.proxy_port, name)[0] == 200
    assert server.cli("releases", app).stdout == before


def test_proxy_tuning_by_config_push_reroutes_nginx(server, deployed) -> None:
    """`[proxy]` in pushdock.toml takes the path of `proxy:set`: re-routed, no release; then 413 above the limit."""
    import http.client

    app, _ = deployed
    before = server.cli("releases", app).stdout
    work = config_checkout(server, app)
    (work / "pushdock.toml").write_text((work / "pushdock.toml").read_text() + '\n[proxy]\nclient-max-body-size = "1k"\n')
    server.commit(work, "a body limit")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert f"remote: -----> Routed {app} to:" in cp.stderr and "next deploy" not in cp.stderr
    conn = http.client.HTTPConnection("127.0.0.1", server.proxy_port, timeout=10)
    conn.request("POST", "/", body=b"x" * 2048, headers={"Host": f"{app}.localhost"})
    assert conn.getresponse().status == 413
    conn.close()
    assert server.cli("releases", app).stdout == before
    server.cli("nginx:set", app, "client-max-body-size")  # back to the default for the other tests
    assert "[proxy]" not in config_checkout(server, app).joinpath("pushdock.toml").read_text()


def test_no_restart_stores_the_config_for_the_next_deploy(server, deployed) -> None:
    app, _ = deployed
    work = config_checkout(server, app)
    (work / "env").write_text((work / "env").read_text().replace("GREETING=", "OLD=") + "LATER=1\n")
    server.commit(work, "later")
    cp = server.git("push", "-o", "no-restart", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> Stored; takes effect on the next deploy" in cp.stderr
    assert server.cli("config:get", app, "LATER").stdout == "1\n"
    assert server.get(app, "/env/LATER") == (200, "")  # the running release is untouched


def test_a_bad_config_leaves_the_app_serving(server, deployed) -> None:
    app, _ = deployed
    before = server.cli("releases", app).stdout
    work = config_checkout(server, app)
    (work / "pushdock.toml").write_text((work / "pushdock.toml").read_text().replace("web = 1", "web = many"))
    server.commit(work, "typo")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode != 0
    assert "(pushdock.toml: Invalid value (at line" in cp.stderr
    assert server.cli("releases", app).stdout == before
    assert server.get(app)[0] == 200


def test_skip_deploy_stores_code_without_deploying(server, deployed) -> None:
    app, work = deployed
    before = server.get(app)
    sha = server.commit(work, "not yet", {"body.txt": "not deployed yet\n"})
    cp = server.push(work, app, "main", "-o", "skip-deploy")
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> main stored, deploy skipped (-o skip-deploy)" in cp.stderr
    assert "Deploying" not in cp.stderr
    assert server.get(app) == before
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == sha


def test_push_over_http_with_a_token_deploys(server, deployed) -> None:
    app, work = deployed
    token = server.cli("tokens:add", unique("ci"), "--role", "deployer", "--apps", app).stdout.splitlines()[-1]
    server.commit(work, "over http", {"body.txt": "pushed over http\n"})
    url = f"http://ci:{token}@127.0.0.1:{server.http_port}/git/{app}.git"
    cp = server.git("push", url, "main", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> Deploying" in cp.stderr and "remote: -----> Released" in cp.stderr
    assert server.get(app) == (200, "pushed over http")
    events = [line for line in server.cli("events", "-n", "50").stdout.splitlines() if "git:push" in line]
    assert any("http" in line for line in events)

"""Claim: a deployer cannot squat a hostname under the global domain that is not its own apps'.

`APP.DOMAIN` (and every name under it) is reserved for app APP, whether APP exists yet or not; a deployer may
add its own apps' names there, and anything outside the global domain; an admin may add any domain. Driven
through the real SSH command door and a real push to refs/meta/config; the last test deploys with Docker.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Server, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("hostnames")
    srv = Server(base).start()
    try:
        srv.add_key("root-admin")
        srv.mine, srv.theirs = unique("mine"), unique("theirs")  # type: ignore[attr-defined]
        for app in (srv.mine, srv.theirs):  # type: ignore[attr-defined]
            srv.cli("apps:create", app)
        srv.deployer_key = base / "deployer"  # type: ignore[attr-defined]
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(srv.deployer_key)], check=True)  # type: ignore[attr-defined]
        srv.add_key("ci", role="deployer", apps=srv.mine, key=srv.deployer_key)  # type: ignore[attr-defined]
        yield srv
    finally:
        srv.stop()


def own_domains(server: Server, app: str) -> str:
    return server.cli("domains:report", app, "--format", "json").stdout


def as_deployer(server: Server, *argv: str) -> subprocess.CompletedProcess[str]:
    return server.ssh(*argv, key=server.deployer_key, check=False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["{theirs}.localhost", "www.{theirs}.localhost", "{future}.localhost",
                                  "api.{future}.localhost", "*.localhost", "localhost"])
def test_a_deployer_cannot_take_names_reserved_for_other_apps(server: Server, name: str) -> None:
    mine = server.mine  # type: ignore[attr-defined]
    name = name.format(theirs=server.theirs, future=unique("future"))  # type: ignore[attr-defined]
    before = own_domains(server, mine)
    for verb in ("domains:add", "domains:set"):
        res = as_deployer(server, verb, mine, name)
        assert res.returncode == 13, res.stderr
        assert res.stderr.startswith(f"error: domain {name} is ") and res.stderr.count("\n") <= 2
        assert own_domains(server, mine) == before


def test_a_deployer_may_add_its_own_names_and_outside_names(server: Server) -> None:
    mine = server.mine  # type: ignore[attr-defined]
    for name in (f"www.{mine}.localhost", f"{mine}-{unique('site')}.example.com"):
        res = as_deployer(server, "domains:add", mine, name)
        assert res.returncode == 0, res.stderr
        assert res.stderr == ""
        assert name in own_domains(server, mine)


def test_a_deployer_cannot_squat_through_refs_meta_config(server: Server, tmp_path: Path) -> None:
    mine, future = server.mine, unique("future")  # type: ignore[attr-defined]
    env = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(server.deployer_key))}  # type: ignore[attr-defined]
    work = tmp_path / "config"
    work.mkdir()

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)

    assert git("init", "-q").returncode == 0
    assert git("fetch", "-q", server.remote(mine), "refs/meta/config").returncode == 0
    assert git("checkout", "-q", "FETCH_HEAD").returncode == 0
    settings = work / "pushdock.toml"
    kept = [line for line in settings.read_text().splitlines() if not line.startswith("domains =")]
    settings.write_text("\n".join([f'domains = ["{future}.localhost"]', *kept]) + "\n")
    assert git("commit", "-qam", "squat").returncode == 0
    res = git("push", server.remote(mine), "HEAD:refs/meta/config")
    assert res.returncode != 0
    assert f"pushdock.toml: domains: domain {future}.localhost is reserved for app {future}" in res.stderr
    assert f"{future}.localhost" not in own_domains(server, mine)


def test_an_admin_may_add_any_domain_and_free_it_again(server: Server) -> None:
    mine, future = server.mine, unique("future")  # type: ignore[attr-defined]
    server.ssh("domains:add", mine, f"{future}.localhost")
    assert f"{future}.localhost" in own_domains(server, mine)
    server.ssh("domains:remove", mine, f"{future}.localhost")
    assert f"{future}.localhost" not in own_domains(server, mine)


def test_the_real_apps_first_push_still_deploys(server: Server) -> None:
    mine, real = server.mine, unique("real")  # type: ignore[attr-defined]
    res = as_deployer(server, "domains:add", mine, f"{real}.localhost")
    assert res.returncode == 13, res.stderr
    work = server.app_repo(real, body="the real one")
    cp = server.push(work, real)
    assert cp.returncode == 0, cp.stderr
    assert server.get(real) == (200, "the real one")

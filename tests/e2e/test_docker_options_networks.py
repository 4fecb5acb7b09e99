"""docker-options and named networks end to end: a real `pushdock serve`, the ssh and git clients, Docker.

One server, two pushes of the sample app: `--shm-size` set before the first deploy reaches the web container
and a `run` container (`df /dev/shm`), a build-phase `--add-host` reaches the Dockerfile build; `--privileged` is refused for a deployer (on both doors: command and
refs/meta/config push) and flagged for an admin; bad input is one line. App B's web joins a named network
after its checks; a `run` container of app A on the same network reaches it by its alias `B.web`."""

from __future__ import annotations

import json
import subprocess

import docker
import pytest

from tests.harness import Server, unique

pytestmark = pytest.mark.docker
MIB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("dockeropts")
    srv = Server(base).start()
    srv.add_key()
    srv.deployer_key = srv.new_key("deployer")
    srv.own = unique("dopt")  # the deployer's app
    srv.add_key("dev", role="deployer", apps=srv.own, key=srv.deployer_key)
    yield srv
    for net in docker.from_env().networks.list(filters={"label": f"pushdock.data-dir={srv.data}"}):
        net.remove()
    srv.stop()


@pytest.fixture(scope="module")
def deployed(server) -> str:
    """The deployer's app, deployed once with `--shm-size 128m` set (by the deployer) before its first push."""
    app = server.own
    server.cli("apps:create", app)
    out = server.ssh("docker-options:add", app, "deploy,run", "--shm-size 128m", key=server.deployer_key)
    assert out.stderr == "" and "takes effect on the next deploy" in out.stdout
    # build phase: the engine's build API takes extra hosts (the build sees them), not --init (said, ignored)
    server.ssh("docker-options:add", app, "build", "--add-host buildhost.test:10.9.8.7", key=server.deployer_key)
    server.ssh("docker-options:add", app, "build", "--init", key=server.deployer_key)
    work = server.app_repo(app)
    dockerfile = (work / "Dockerfile").read_text().replace("EXPOSE", "RUN getent hosts buildhost.test > /app/h.txt\n"
                                                                      "EXPOSE")
    server.commit(work, "build sees the host", {"Dockerfile": dockerfile})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "Build options the Dockerfile builder cannot apply (ignored): init" in res.stderr
    return app


def one_line_error(cp: subprocess.CompletedProcess[str], text: str) -> None:
    assert cp.returncode != 0, cp.stdout
    assert cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr
    assert text in cp.stderr, cp.stderr


def web(app: str):
    found = docker.from_env().containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def events(server: Server, action: str) -> list[dict]:
    lines = (server.data / "events.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["action"] == action]


def test_shm_size_reaches_the_containers_and_dangerous_options_are_admin_only(server, deployed) -> None:
    app = deployed
    assert web(app).attrs["HostConfig"]["ShmSize"] == 128 * MIB
    run = server.ssh("run", app, "df", "-k", "/dev/shm", key=server.deployer_key)
    assert run.returncode == 0 and run.stdout.splitlines()[-1].split()[1] == "131072", run.stdout
    assert server.ssh("run", app, "cat", "/app/h.txt").stdout.split() == ["10.9.8.7", "buildhost.test"]

    # dangerous: refused for the deployer in one line, accepted and flagged for an admin
    cp = server.ssh("docker-options:add", app, "deploy", "--privileged", key=server.deployer_key, check=False)
    one_line_error(cp, "--privileged gives the container the whole host: admin only")
    assert cp.returncode == 13
    cp = server.ssh("docker-options:add", app, "deploy", "--pid=host", key=server.deployer_key, check=False)
    one_line_error(cp, "admin only")
    out = server.ssh("docker-options:add", app, "deploy", "--privileged")
    assert out.stderr == "" and "warning: --privileged gives the container the whole host" in out.stdout
    assert events(server, "docker-options:flagged")[-1]["flagged"] == ["--privileged gives the container the "
                                                                       "whole host"]
    report = json.loads(server.ssh("docker-options:report", app, "--format", "json").stdout)
    assert report == {"docker-options-build": ["--add-host buildhost.test:10.9.8.7", "--init"],
                      "docker-options-deploy": ["--shm-size 128m", "--privileged"],
                      "docker-options-run": ["--shm-size 128m"]}
    assert web(app).attrs["HostConfig"]["Privileged"] is False  # as in Dokku: applies from the next deploy
    server.ssh("docker-options:remove", app, "deploy", "--privileged")

    # bad input: one line, nothing stored
    for args, reason in ((("deploy", "--memory", "1g"), "use resource:limit"),
                         (("deploy", "--network", "backend"), "use network:set"),
                         (("nope", "--init"), "unknown phase 'nope'"),
                         (("deploy", "--frobnicate"), "unsupported option '--frobnicate'")):
        one_line_error(server.ssh("docker-options:add", app, *args, check=False), reason)
    one_line_error(server.ssh("docker-options:remove", app, "run", "--init", check=False), "has no option")

    # the same rules on a push to refs/meta/config
    conf = server.base / f"config-{app}"
    server.git("init", "-q", str(conf), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=conf, check=True)
    server.git("checkout", "-q", "FETCH_HEAD", cwd=conf, check=True)
    toml = conf / "pushdock.toml"
    assert 'deploy = ["--shm-size 128m"]' in toml.read_text()  # every change is a commit of the setting
    toml.write_text(toml.read_text().replace('deploy = ["--shm-size 128m"]',
                                             'deploy = ["--shm-size 128m", "--cap-add SYS_ADMIN"]'))
    server.commit(conf, "more power")
    as_deployer = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(server.deployer_key))}
    cp = subprocess.run(["git", "push", server.remote(app), "HEAD:refs/meta/config"], cwd=conf, env=as_deployer,
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode != 0 and "--cap-add SYS_ADMIN gives the container power over the host: admin only" \
        in cp.stderr, cp.stderr
    assert json.loads(server.ssh("docker-options:report", app, "--format", "json").stdout)[
        "docker-options-deploy"] == ["--shm-size 128m"]
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=conf)  # an admin's: applied, flagged
    assert cp.returncode == 0 and "Warning: docker_options: --cap-add SYS_ADMIN gives the container power" \
        in cp.stderr, cp.stderr
    assert events(server, "docker-options:flagged")[-1]["via"] == "refs/meta/config"
    assert json.loads(server.ssh("docker-options:report", app, "--format", "json").stdout)[
        "docker-options-deploy"] == ["--shm-size 128m", "--cap-add SYS_ADMIN"]
    server.ssh("docker-options:remove", app, "deploy", "--cap-add SYS_ADMIN")


def test_a_run_container_reaches_another_app_by_its_alias_on_a_named_network(server, deployed) -> None:
    a, b, net = deployed, unique("netb"), unique("net")
    cp = server.ssh("network:create", net, key=server.deployer_key, check=False)
    one_line_error(cp, "admin only")
    out = server.ssh("network:create", net)
    assert out.stderr == "" and f"Created network {net} (bridge)" in out.stdout
    one_line_error(server.ssh("network:create", net, check=False), "already exists")
    one_line_error(server.ssh("network:create", "host", check=False), "engine's own network")
    assert [n["name"] for n in json.loads(server.ssh("network:list", "--format", "json").stdout)] == [net]

    server.cli("apps:create", b)
    one_line_error(server.ssh("network:set", b, "attach-post-deploy", net, key=server.deployer_key, check=False),
                   "has no access to app")
    server.ssh("network:set", b, "attach-post-deploy", net)
    server.ssh("network:set", a, "attach-post-create", net, key=server.deployer_key)  # its own app
    one_line_error(server.ssh("network:set", a, "attach-post-create", "missing-net", check=False), "does not exist")
    one_line_error(server.ssh("network:set", a, "sideways", net, check=False), "unknown network property")
    work = server.app_repo(b, body="hello from b")
    res = server.push(work, b)
    assert res.returncode == 0, res.stderr
    info = json.loads(server.ssh("network:info", net, "--format", "json").stdout)
    assert info["containers"] == [web(b).name] and info["apps"] == sorted([a, b])
    assert web(b).attrs["NetworkSettings"]["Networks"][net]["Aliases"][:2] == [f"{b}.web", f"{b}.web.1"]

    # A's running web was started before the setting (it joins at its next deploy); a one-off container of A
    # joins at its creation and finds B by alias
    fetch = f"import urllib.request; print(urllib.request.urlopen('http://{b}.web:5000/', timeout=5).read().decode())"
    run = server.ssh("run", a, "python3", "-c", fetch)
    assert (run.returncode, run.stdout.strip()) == (0, "hello from b"), run.stderr
    report = json.loads(server.ssh("network:report", a, "--format", "json").stdout)
    assert report["network-attach-post-create"] == [net] and report["network-initial-network"] == []

    cp = server.ssh("network:destroy", net, check=False)
    one_line_error(cp, f"network {net} is set for {', '.join(sorted([a, b]))}")
    out = server.ssh("network:destroy", net, "--force")
    assert out.stderr == "" and "1 container(s) disconnected" in out.stdout
    assert json.loads(server.ssh("network:report", b, "--format", "json").stdout)["network-attach-post-deploy"] == []
    assert server.get(b) == (200, "hello from b")

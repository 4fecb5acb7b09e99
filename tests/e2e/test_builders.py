"""Builders end to end: real pushes to `pushdock serve`, real builds in containers of the stack image, apps served
through the real nginx. One server for the module; small apps; the python and nodejs builds reach PyPI and npm
from inside the build container (the stack image carries the host's CA bundle).

Mocked: only `pack` (tests/fakes/pack, on the server's PATH), which cannot be installed here; its docstring
says what it checks and what it does not cover.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import docker
import pytest

from tests.harness import ROOT, Server, image_tags, unique

pytestmark = pytest.mark.docker

FAKES = ROOT / "tests" / "fakes"
TRIED = "tried pushdock/python, pushdock/nodejs, pushdock/static, pushdock/procfile"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("builders")
    srv = Server(base, PATH=f"{FAKES}:{os.environ['PATH']}", FAKE_PACK_LOG=str(base / "pack.log")).start()
    srv.add_key()
    yield srv
    srv.stop()


def deploy(server: Server, sample: str, prefix: str) -> tuple[str, Path, str]:
    app = unique(prefix)
    work = server.app_repo(app, sample)
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    return app, work, res.stderr


def rejected(server: Server, work: Path, app: str) -> str:
    res = server.push(work, app)
    assert res.returncode != 0, res.stderr
    assert "! [remote rejected] main -> main (" in res.stderr, res.stderr
    return res.stderr


def image_of(app: str) -> str:
    """The app's newest image (pushdock/APP:vN)."""
    tags = image_tags(app)
    return max(tags, key=lambda t: int(t.rsplit(":v", 1)[1]))


def test_flask_with_gunicorn_from_requirements(server: Server) -> None:
    app = unique("flask")
    server.cli("apps:create", app)
    server.cli("config:set", "--no-restart", app, "SECRET_TOKEN=s3cr3t-value")
    work = server.app_repo(app, "buildpack-flask")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "remote: -----> Building with the herokuish builder (no Dockerfile found)" in res.stderr
    assert "remote: -----> Python app detected" in res.stderr
    assert "Installing requirements.txt with uv" in res.stderr
    assert server.get(app) == (200, "hello from flask")
    assert server.get(app, "/env/SECRET_TOKEN") == (200, "s3cr3t-value")  # config at run time
    assert (server.data / "cache" / app / "uv").is_dir()  # the persistent build cache
    # the config is never part of the image: not in its env, not in /tmp/env, not under /app
    image = image_of(app)
    out = docker.from_env().containers.run(
        image, ["-c", "ls -A /tmp/env; grep -rl s3cr3t-value /app /tmp /etc 2>/dev/null; ps -o comm= 1; env"],
        entrypoint="/bin/sh", remove=True).decode()
    assert "s3cr3t-value" not in out and "SECRET_TOKEN" not in out, out


def test_express_from_package_json_with_a_warm_cache(server: Server) -> None:
    app, work, out = deploy(server, "buildpack-express", "express")
    assert "remote: -----> Node.js app detected" in out
    assert "Installing dependencies with npm ci" in out  # a lock file
    assert server.get(app) == (200, "hello from express")
    server.commit(work, "body", {"body.txt": "express again\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "Restoring node_modules (package.json and lock file unchanged)" in res.stderr
    assert server.get(app) == (200, "express again")


def test_static_site_then_a_failing_compile_keeps_it_serving(server: Server) -> None:
    app, work, out = deploy(server, "buildpack-static", "static")
    assert "remote: -----> Static app detected" in out
    status, body = server.get(app)
    assert status == 200 and "hello from static" in body
    old = server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0]
    server.commit(work, "bad requirement", {"requirements.txt": "pushdock-no-such-package-b3==1.0\n"})
    err = rejected(server, work, app)
    assert "remote: -----> Python app detected" in err
    assert "pushdock-no-such-package-b3" in err.split("[remote rejected]")[0]  # the compile output was streamed
    assert "buildpack compile failed (exit status 1)" in err
    assert server.get(app) == (status, body)
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == old


def test_procfile_only_app(server: Server) -> None:
    app, _, out = deploy(server, "buildpack-procfile", "procfile")
    assert "remote: -----> Procfile app detected" in out
    assert server.get(app) == (200, "hello from procfile")


def test_dockerfile_app(server: Server) -> None:
    app, _, out = deploy(server, "e2e-web", "dockerfile")
    assert "remote: -----> Building with the dockerfile builder (Dockerfile found)" in out
    assert server.get(app) == (200, "hello from pushdock")


def test_buildpacks_file_wins_over_a_dockerfile(server: Server) -> None:
    app, _, out = deploy(server, "buildpack-both", "both")
    assert "remote: -----> Building with the herokuish builder (.buildpacks found)" in out
    assert "Using buildpacks ./buildpacks/banner, pushdock/static (from .buildpacks)" in out
    assert out.index("Banner app detected") < out.index("Static app detected")  # in order
    status, body = server.get(app)
    assert status == 200 and "built by buildpacks" in body and "banner added by ./buildpacks/banner" in body


def test_custom_buildpack_from_a_git_url_served_by_pushdock(server: Server) -> None:
    """The buildpack is pushed to pushdock's own git server (stored, not deployed) and used through a file://
    URL to that bare repository: dulwich fetches it like any remote, and it is then cached by commit."""
    bp = unique("bp")
    bp_work = server.app_repo(bp, "buildpack-custom")
    res = server.push(bp_work, bp, "main", "-o", "skip-deploy")
    assert res.returncode == 0, res.stderr
    url = f"file://{server.data / 'repos' / f'{bp}.git'}#main"

    app = unique("greet")
    server.cli("apps:create", app)
    server.cli("config:set", "--no-restart", app, "GREETING=hello from a custom buildpack")
    assert server.cli("buildpacks:add", app, url).returncode == 0
    assert json.loads(server.cli("buildpacks:list", app, "--format", "json").stdout) == [
        {"index": 1, "buildpack": url}]
    work = server.base / f"work-{app}"
    work.mkdir()
    server.git("init", "-q", "-b", "main", cwd=work, check=True)
    server.commit(work, "an app with nothing a shipped buildpack detects", {"README.md": "hi\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert f"remote: -----> Fetching buildpack {url}" in res.stderr
    assert "remote: -----> Greeting app detected" in res.stderr
    assert server.get(app) == (200, "hello from a custom buildpack (build 1)")

    server.commit(work, "again", {"README.md": "again\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "(cached)" in res.stderr  # same commit: not fetched again
    assert server.get(app) == (200, "hello from a custom buildpack (build 2)")  # CACHE_DIR persisted
    report = json.loads(server.cli("builder:report", app, "--format", "json").stdout)
    assert report["builder detected"] == "herokuish"
    assert report["builder buildpacks"] == f"{url} (from buildpacks:list)"


def test_bad_input_rejects_the_push_and_deploys_nothing(server: Server) -> None:
    app = unique("bad")
    server.cli("apps:create", app)
    work = server.base / f"work-{app}"
    work.mkdir()
    server.git("init", "-q", "-b", "main", cwd=work, check=True)

    server.commit(work, "nothing to detect", {"README.md": "just text\n"})
    assert f"no buildpack detected this app ({TRIED})" in rejected(server, work, app)

    server.commit(work, "bad .buildpacks", {".buildpacks": "pushdock/static\npython\n"})
    err = rejected(server, work, app)
    assert ".buildpacks line 2: not a buildpack URL or folder: 'python'" in err

    (work / ".buildpacks").unlink()
    server.commit(work, "no .buildpacks")
    server.cli("config:set", "--no-restart", app, "BUILDPACK_URL=ftp://example.com/bp")
    assert "BUILDPACK_URL: not a buildpack URL or folder: 'ftp://example.com/bp'" in rejected(server, work, app)

    server.cli("config:set", "--no-restart", app, "BUILDPACK_URL=file:///nonexistent/pushdock-bp.git")
    assert "cannot read buildpack 'file:///nonexistent/pushdock-bp.git'" in rejected(server, work, app)

    server.cli("config:unset", "--no-restart", app, "BUILDPACK_URL")
    server.commit(work, "bad Procfile", {"Procfile": "web python3 -m http.server\n", "index.html": "x\n"})
    assert "Procfile line 1 is not 'type: command'" in rejected(server, work, app)

    assert docker.from_env().images.list(name=f"pushdock/{app}") == []  # nothing was built


def test_pack_builder_with_a_stand_in_pack(server: Server) -> None:
    app = unique("pack")
    server.cli("apps:create", app)
    server.cli("builder-pack:set", app, "builder", "fake/builder:1")
    server.cli("config:set", "--no-restart", app, "API_KEY=pack-secret-value")
    work = server.app_repo(app, "buildpack-pack")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "remote: -----> Building with the pack builder (project.toml found)" in res.stderr
    assert "remote: ===> DETECTING" in res.stderr  # pack's output, streamed
    assert server.get(app) == (200, "hello from pack")
    runs = [json.loads(line) for line in (server.base / "pack.log").read_text().splitlines()]
    argv = next(r["argv"] for r in runs if r["argv"][1].startswith(f"pushdock/{app}:"))
    assert argv[2:10] == ["--path", argv[3], "--builder", "fake/builder:1", "--default-process", "web",
                          "--pull-policy", "if-not-present"]
    assert "API_KEY" in argv and "pack-secret-value" not in json.dumps(runs)  # keys on argv, values in env
    config = docker.from_env().api.inspect_image(image_of(app))["Config"]
    assert config["Entrypoint"] == ["/cnb/lifecycle/launcher"]
    assert config["Labels"]["pushdock.builder"] == "pack"

    server.cli("builder-pack:set", app, "builder", "fail/builder")
    server.commit(work, "break", {"body.txt": "never served\n"})
    err = rejected(server, work, app)
    assert "remote: ERROR: No buildpack groups passed detection." in err
    assert "pack build failed (exit status 1)" in err
    assert server.get(app) == (200, "hello from pack")


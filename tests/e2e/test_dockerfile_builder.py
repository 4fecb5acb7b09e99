"""The Dockerfile builder and the stack image against the real Docker engine (classic builder, offline).

Every image is built under a unique tag and removed at the end. pushdock/stack:bookworm is only read.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import time
import urllib.request
from pathlib import Path

import docker
import pytest

import builders.plugin
from builders.dockerfile import DockerfileBuilder
from builders.stack import build_stack_image
from pushdock.builder import BuildRequest
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.errors import BuildFailed
from pushdock.progress import Progress
from pushdock.settings import Settings

pytestmark = pytest.mark.docker

APPS = Path(__file__).resolve().parents[1] / "apps"
STACK = "pushdock/stack:bookworm"


@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    client = docker.from_env()
    client.images.get(STACK)  # the suite's set-up builds it; fail loudly if it is missing
    return client


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    settings = Settings(data_dir=tmp_path / "data")
    bus = Bus(settings.data_dir / "plugins", extra_plugins=(builders.plugin,), entry_points=False)
    return Context(settings=settings, bus_override=bus)


@pytest.fixture
def tags(engine: docker.DockerClient):
    """Factory of unique image tags; every one of them is removed afterwards."""
    made: list[str] = []

    def tag(kind: str = "app") -> str:
        made.append(f"pushdock-test/{kind}-{secrets.token_hex(4)}:v1")
        return made[-1]

    yield tag
    for t in made:
        try:
            engine.images.remove(t, force=True)
        except docker.errors.ImageNotFound:
            pass


def app_name() -> str:
    return f"bt{secrets.token_hex(4)}"


def test_builds_the_hello_app_streaming_its_output(engine: docker.DockerClient, ctx: Context, tags) -> None:
    app, image, lines = app_name(), tags(), []
    seen_at: list[float] = []

    def sink(line: str) -> None:
        lines.append(line)
        seen_at.append(time.monotonic())

    started = time.monotonic()
    result = DockerfileBuilder().build(ctx, BuildRequest(app, APPS / "dockerfile-hello", image), Progress(sink))
    took = time.monotonic() - started

    assert result.image == image
    assert result.processes == {"web": ""}
    assert result.web_port == 5000
    assert lines[0].startswith("Step 1/")
    assert f"Successfully tagged {image}" in lines
    assert not any("\x1b" in line for line in lines)
    assert seen_at[0] - started < took  # streamed as it came, not all at the end
    # no LABEL step of pushdock's own (each is an intermediate container): the tag names the app
    assert not any(" : LABEL " in line for line in lines)
    assert not any(k.startswith("pushdock.") for k in engine.images.get(image).labels or {})

    # The image runs: it answers on $PORT and stops cleanly (exit 0) on SIGTERM.
    c = engine.containers.run(image, detach=True, environment={"MESSAGE": "hi from e2e"},
                              ports={"5000/tcp": ("127.0.0.1", None)}, name=f"{app}-web")
    try:
        c.reload()
        port = c.ports["5000/tcp"][0]["HostPort"]
        body = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(0.1)
        assert body == "hi from e2e\n"
        c.stop(timeout=10)
        assert c.wait(timeout=15)["StatusCode"] == 0
        assert b"stopped" in c.logs()
    finally:
        c.remove(force=True)


def test_failing_run_is_a_one_line_build_failure(ctx: Context, tmp_path: Path, tags) -> None:
    (tmp_path / "src").mkdir()
    # A fresh failing step each run (cached steps print nothing); no step succeeds, so no layer is left.
    token = secrets.token_hex(4)
    (tmp_path / "src" / "Dockerfile").write_text(f"FROM {STACK}\nRUN echo before-{token} && false\n")
    lines: list[str] = []
    with pytest.raises(BuildFailed) as e:
        DockerfileBuilder().build(ctx, BuildRequest(app_name(), tmp_path / "src", tags()), Progress(lines.append))
    assert e.value.message == (
        f"docker build failed: The command '/bin/sh -c echo before-{token} && false' returned a non-zero code: 1"
    )
    assert f"before-{token}" in lines
    assert any(re.match(rf"Step 2/\d+ : RUN echo before-{token} && false$", line) for line in lines)


def test_the_fail_app_fails_with_its_exit_code(ctx: Context, tags) -> None:
    lines: list[str] = []
    with pytest.raises(BuildFailed, match=r"returned a non-zero code: 3$"):
        DockerfileBuilder().build(ctx, BuildRequest(app_name(), APPS / "dockerfile-fail", tags()),
                                  Progress(lines.append))
    assert any(re.match(r"Step 2/\d+ : RUN echo \"about to fail\" && exit 3$", line) for line in lines)
    assert "about to fail" in lines


def test_dockerfile_path_and_build_args(engine: docker.DockerClient, ctx: Context, tmp_path: Path, tags) -> None:
    app, image = app_name(), tags()
    src = tmp_path / "src"
    (src / "docker").mkdir(parents=True)
    (src / "docker" / "Dockerfile.web").write_text(
        f"FROM {STACK}\nARG GREETING\nARG UNLISTED\n"
        'RUN echo "greeting=$GREETING unlisted=$UNLISTED"\n'
        "EXPOSE 8080 \\\n  5000\n"
    )
    ctx.state.set("builder-dockerfile", app, "dockerfile-path", "docker/Dockerfile.web")
    ctx.state.set_json("builder-dockerfile", app, "build-args", ["GREETING", "NOT_IN_ENV"])
    lines: list[str] = []
    greeting = f"hello {secrets.token_hex(4)}"  # a new ARG value: the RUN step is not cached
    env = {"GREETING": greeting, "UNLISTED": "secret"}
    result = DockerfileBuilder().build(ctx, BuildRequest(app, src, image, env), Progress(lines.append))
    assert f"greeting={greeting} unlisted=" in lines
    assert result.web_port == 8080  # the first EXPOSEd, though the engine lists 5000 first
    assert result.processes == {}  # no CMD of its own (the stack image has none)


def test_missing_dockerfile_path_fails(ctx: Context, tags) -> None:
    app = app_name()
    ctx.state.set("builder-dockerfile", app, "dockerfile-path", "Dockerfile.prod")
    with pytest.raises(BuildFailed, match=r"invalid dockerfile-path 'Dockerfile\.prod'"):
        DockerfileBuilder().build(ctx, BuildRequest(app, APPS / "dockerfile-hello", tags()), Progress())


def test_stack_build_skips_an_existing_image(ctx: Context) -> None:
    assert ctx.settings.stack_image == STACK
    out, err = io.StringIO(), io.StringIO()
    assert dispatch(["stack:build"], ctx, out, err) == 0, err.getvalue()
    assert out.getvalue().startswith(f"{STACK} exists (")


def test_build_stack_image(engine: docker.DockerClient, ctx: Context, tmp_path: Path, tags) -> None:
    """A minimal stack (ca-certificates only) keeps this near a minute; the default adds python."""
    image = tags("stack")
    work = tmp_path / "work"
    work.mkdir()
    lines: list[str] = []
    built = build_stack_image(ctx, Progress(lines.append), image=image, include=("ca-certificates",), workdir=work)
    print(f"stack build took {built.seconds:.1f}s, {built.size / 1e6:.0f} MB")

    assert built.built and built.image == image and built.size > 10_000_000
    assert list(work.iterdir()) == []  # the temp dir is gone
    assert any("debootstrap" in line.lower() or line.strip().startswith("I:") for line in lines)
    config = engine.api.inspect_image(image)["Config"]
    assert "LANG=C.UTF-8" in config["Env"]
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in config["Env"])

    host_sum = hashlib.sha256(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()).hexdigest()
    out = engine.containers.run(
        image, ["sh", "-c", "sha256sum </etc/ssl/certs/ca-certificates.crt; ls /var/lib/apt/lists | wc -l; "
                "ls /var/cache/apt/archives/ | grep -c '[.]deb$' || true"],
        remove=True, name=f"{app_name()}-stack",
    )
    bundle_sum, lists, debs = out.decode().split("\n")[:3]
    assert bundle_sum.split()[0] == host_sum  # the host's CA bundle, so builds FROM it reach PyPI
    assert int(lists) <= 2  # at most `lock` and `partial/`
    assert int(debs) == 0


def test_stack_build_failure_is_one_line_and_cleans_up(engine: docker.DockerClient, ctx: Context,
                                                        tmp_path: Path) -> None:
    image, work = f"pushdock-test/never-{secrets.token_hex(4)}:v1", tmp_path / "work"
    work.mkdir()
    with pytest.raises(BuildFailed) as e:
        build_stack_image(ctx, Progress(), image=image, mirror="http://127.0.0.1:9/debian", workdir=work)
    assert e.value.message.startswith("debootstrap exited 1: Failed getting release file http://127.0.0.1:9/")
    assert list(work.iterdir()) == []
    with pytest.raises(docker.errors.ImageNotFound):
        engine.images.get(image)

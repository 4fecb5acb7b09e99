"""The Dockerfile builder's pure parts: stream splitting, colour stripping, errors, EXPOSE ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders.dockerfile import DockerfileBuilder, clean, dockerfile_exposes, stream_build, web_port
from pushdock import docker_client
from pushdock.builder import BuildRequest
from pushdock.context import Context
from pushdock.errors import BuildFailed
from pushdock.progress import Progress


def collect(chunks: list[dict]) -> tuple[list[str], str | None]:
    lines: list[str] = []
    error = stream_build(chunks, lines.append)
    return lines, error


def test_chunks_are_buffered_into_lines() -> None:
    lines, error = collect([
        {"stream": "Step 1/3 : FROM x\n"},
        {"stream": " ---> abc"},
        {"stream": "123\nStep 2/3 : RUN"},
        {"stream": " echo hi\n\n"},
        {"aux": {"ID": "sha256:xyz"}},
        {"stream": "Successfully built xyz"},
    ])
    assert error is None
    assert lines == ["Step 1/3 : FROM x", " ---> abc123", "Step 2/3 : RUN echo hi", "", "Successfully built xyz"]


def test_ansi_colour_codes_are_stripped() -> None:
    lines, _ = collect([{"stream": "\x1b[91mnpm WARN deprecated\n\x1b[0m"}, {"stream": "ok\n"}])
    assert lines == ["npm WARN deprecated", "ok"]


def test_carriage_return_redraws_keep_the_last_state() -> None:
    assert clean("10%\r50%\r100%\r") == "100%"
    assert clean("plain") == "plain"


def test_status_chunks_are_lines() -> None:
    lines, _ = collect([{"status": "Downloading", "progress": "[==>  ]"}, {"status": "Done"}])
    assert lines == ["Downloading [==>  ]", "Done"]


def test_error_is_streamed_returned_and_the_stream_consumed() -> None:
    consumed = []

    def chunks():
        for c in [{"stream": "Step 2/2 : RUN false\n ---> Running in 1"},
                  {"errorDetail": {"code": 1, "message": "The command '/bin/sh -c false'\nreturned a non-zero code: 1"},
                   "error": "short"},
                  {"stream": "after\n"}]:
            consumed.append(c)
            yield c

    lines, error = collect(list(chunks()))
    assert error == "The command '/bin/sh -c false' returned a non-zero code: 1"
    assert lines == [
        "Step 2/2 : RUN false", " ---> Running in 1",
        "The command '/bin/sh -c false' returned a non-zero code: 1", "after",
    ]
    assert len(consumed) == 3


def test_the_last_error_wins() -> None:
    _, error = collect([{"error": "first"}, {"error": "\x1b[31msecond\x1b[0m"}])
    assert error == "second"


@pytest.mark.parametrize(
    ("exposed", "dockerfile", "port"),
    [
        ({"5000/tcp": {}}, "FROM x\nEXPOSE 5000\n", 5000),
        ({"10000/tcp": {}, "5000/tcp": {}}, "FROM x\nEXPOSE 5000 10000\n", 5000),
        ({"10000/tcp": {}, "5000/tcp": {}}, "FROM x\nexpose 10000/tcp\nEXPOSE 5000\n", 10000),
        ({"53/udp": {}, "8080/tcp": {}}, "FROM x\nEXPOSE 53/udp 8080\n", 8080),
        ({"8080/tcp": {}, "9000/tcp": {}}, "FROM x\nEXPOSE $PORT\n", 8080),  # ARG: lowest of the image
        ({"3000/tcp": {}}, "FROM base AS a\nEXPOSE 9999\nFROM x\nEXPOSE \\\n  3000\n", 3000),
        ({}, "FROM x\nEXPOSE 5000\n", None),  # the image is the truth
        ({"53/udp": {}}, "FROM x\n", None),
        ([], "FROM x\n", None),
    ],
)
def test_web_port(exposed: dict, dockerfile: str, port: int | None) -> None:
    assert web_port(exposed, dockerfile) == port


def test_exposed_ports_dockerfile_order_first() -> None:
    from builders.dockerfile import exposed_ports

    image = {"10000/tcp": {}, "5000/tcp": {}, "53/udp": {}, "8080/tcp": {}}
    assert exposed_ports(image, "FROM x\nEXPOSE 10000 53/udp\nEXPOSE 5000 10000\n") == (10000, 5000, 8080)
    assert exposed_ports({}, "FROM x\nEXPOSE 5000\n") == ()


def test_dockerfile_exposes_in_order() -> None:
    text = "# EXPOSE 1\nFROM x\nEXPOSE 8000 \\\n  8001/tcp 53/udp\nRUN echo EXPOSE 7\n  EXPOSE 99999 0 80\n"
    assert dockerfile_exposes(text) == [8000, 8001, 80]


def test_detect(tmp_path: Path) -> None:
    assert DockerfileBuilder().detect(tmp_path, {}, "Dockerfile") is None
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert DockerfileBuilder().detect(tmp_path, {}, "Dockerfile") == "Dockerfile found"
    assert DockerfileBuilder.name == "dockerfile"


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DOCKER_HOST at a socket nobody serves, and no client cached from an earlier test in this process (it
    would still talk to the real engine: whether one was made depended on which tests ran before here)."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    monkeypatch.setattr(docker_client, "_clients", {})


@pytest.mark.usefixtures("no_engine")
def test_unreachable_engine_is_a_one_line_build_failure(ctx: Context, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    with pytest.raises(BuildFailed) as e:
        DockerfileBuilder().build(ctx, BuildRequest("myapp", tmp_path, "pushdock-test/x:v1"), Progress())
    assert e.value.message.startswith("docker engine is not reachable")
    assert "\n" not in e.value.message


@pytest.mark.usefixtures("no_engine")
def test_bad_dockerfile_path_fails_before_docker(ctx: Context, tmp_path: Path) -> None:
    ctx.state.set("builder-dockerfile", "myapp", "dockerfile-path", "docker/Dockerfile")
    with pytest.raises(BuildFailed, match="invalid dockerfile-path 'docker/Dockerfile'"):
        DockerfileBuilder().build(ctx, BuildRequest("myapp", tmp_path, "pushdock-test/x:v1"), Progress())

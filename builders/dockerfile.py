"""The Dockerfile builder: the engine's classic builder, its output streamed line by line as it arrives."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loguru import logger

from builders import detect, properties
from pushdock import docker_client, docker_options, pushed, resources
from pushdock.builder import BuildRequest, BuildResult
from pushdock.errors import BuildFailed

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
EXPOSE = re.compile(r"^\s*expose\s+(.*)$", re.IGNORECASE)
MAX_REASON = 300
UNREACHABLE = "docker engine is not reachable"
OOM_STATUS = re.compile(r"non-zero code: 137\b")

T = TypeVar("T")


class DockerfileBuilder:
    """Builds apps whose tree has a Dockerfile (at `builder-dockerfile:set APP dockerfile-path`)."""

    name = "dockerfile"

    def detect(self, build_dir: Path, env: Mapping[str, str], dockerfile: str) -> str | None:
        return detect.dockerfile_rule(build_dir, env, dockerfile)

    def build(self, ctx: Context, req: BuildRequest, progress: Progress) -> BuildResult:
        dockerfile = properties.resolve_dockerfile(
            req.build_dir, properties.get_dockerfile_path(ctx.state, req.app)
        )
        # the engine's client reads .dockerignore on this host: only from inside the tree (the context itself
        # is sent as a tar of lstat()ed entries, symlinks as symlinks: tests/e2e/test_pushed_symlinks.py)
        pushed.read_bytes(req.build_dir, ".dockerignore")
        buildargs = properties.build_args(properties.get_build_args(ctx.state, req.app), req.env)
        api = _docker_api()
        limits = resources.for_build(ctx, req.app)
        nocache = bool(ctx.state.get(properties.DOCKERFILE, req.app, properties.NO_CACHE))
        options, ignored = docker_options.for_phase(ctx.state, req.app, "build").build_api()
        if ignored:  # as Dokku: the Dockerfile builder strips what the engine's build API has no field for
            progress.step("Build options the Dockerfile builder cannot apply (ignored): " + ", ".join(ignored))
        if nocache:
            progress.step("Building without the layer cache (repo:purge-cache)")
        logger.info("dockerfile build", image=req.image, dockerfile=dockerfile, build_args=sorted(buildargs))
        chunks = _api_call(
            lambda: api.build(
                path=str(req.build_dir), tag=req.image, dockerfile=dockerfile, buildargs=buildargs,
                # no pushdock labels: the classic builder appends a LABEL step per key, each an intermediate container
                # and a commit (~0.1 s of every build); the tag names the app and nothing reads a label of a
                # Dockerfile image (process_command.image_entrypoint looks for herokuish's and pack's only)
                labels=options.pop("labels", None) or None,
                decode=True, rm=True, forcerm=True, pull=False, timeout=None, nocache=nocache,
                container_limits=resources.build_container_limits(limits),
                **_build_keywords(options),
            )
        )
        error = _api_call(lambda: stream_build(chunks, progress.line))
        if error is not None:
            logger.info("dockerfile build failed", image=req.image)
            if OOM_STATUS.search(error):  # SIGKILL: with a memory cap, almost always the kernel's OOM killer
                raise BuildFailed(f"docker build failed: {error}: {resources.build_out_of_memory(limits)}")
            raise BuildFailed(f"docker build failed: {error}")
        ctx.state.delete(properties.DOCKERFILE, req.app, properties.NO_CACHE)
        config = _api_call(lambda: api.inspect_image(req.image)).get("Config") or {}
        text = pushed.read_text(req.build_dir, dockerfile) or ""
        return BuildResult(
            image=req.image,
            processes={"web": ""} if (config.get("Cmd") or config.get("Entrypoint")) else {},
            web_port=web_port(config.get("ExposedPorts") or {}, text),
            exposed=exposed_ports(config.get("ExposedPorts") or {}, text),
        )


def stream_build(chunks: Iterable[Mapping[str, Any]], on_line: Callable[[str], None]) -> str | None:
    """Hand each output line of a decoded build stream to `on_line`; return the last error, if any.

    The stream is consumed to its end even after an error: leaving early cancels the build.
    """
    error: str | None = None
    for line, chunk_error in _lines(chunks):
        if chunk_error is not None:
            error = chunk_error
        if line is not None:
            on_line(line)
    return error


def _lines(chunks: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str | None, str | None]]:
    buf = ""
    for chunk in chunks:
        if "error" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = one_line(str(detail.get("message") or chunk["error"]))
            if buf:
                yield clean(buf), None
                buf = ""
            yield message, message
            continue
        text = chunk.get("stream")
        if text is None and "status" in chunk:
            text = f"{chunk['status']} {chunk.get('progress', '')}".rstrip() + "\n"
        if not text:
            continue
        buf += str(text)
        while "\n" in buf:
            line, buf = buf.split("\n", 1)
            yield clean(line), None
    if buf:
        yield clean(buf), None


def clean(line: str) -> str:
    """Strip colour codes; of a line redrawn with carriage returns, keep what was drawn last."""
    line = ANSI.sub("", line).rstrip("\r")
    if "\r" in line:
        line = next((part for part in reversed(line.split("\r")) if part.strip()), "")
    return line


def one_line(message: str) -> str:
    message = " ".join(ANSI.sub("", message).split())
    return message if len(message) <= MAX_REASON else message[: MAX_REASON - 3] + "..."


def web_port(exposed: Mapping[str, Any] | Iterable[str], dockerfile_text: str) -> int | None:
    """The web port: the first tcp port the Dockerfile EXPOSEs that the image exposes, else the lowest.

    The image's ExposedPorts has no order (and includes its base image's ports), so the Dockerfile
    says which came first; ports from ARGs or the base image still count, after those.
    """
    image_ports = sorted({p for p in (_tcp_port(s) for s in exposed) if p is not None})
    for port in dockerfile_exposes(dockerfile_text):
        if port in image_ports:
            return port
    return image_ports[0] if image_ports else None


def exposed_ports(exposed: Mapping[str, Any] | Iterable[str], dockerfile_text: str) -> tuple[int, ...]:
    """Every tcp port the image exposes: those the Dockerfile EXPOSEs in its order, then the others, lowest first."""
    image_ports = sorted({p for p in (_tcp_port(s) for s in exposed) if p is not None})
    first = [p for p in dict.fromkeys(dockerfile_exposes(dockerfile_text)) if p in image_ports]
    return (*first, *(p for p in image_ports if p not in first))


def dockerfile_exposes(text: str) -> list[int]:
    """The tcp ports of the literal EXPOSE instructions, in order (continuation lines joined)."""
    ports: list[int] = []
    for instruction in _instructions(text):
        m = EXPOSE.match(instruction)
        if m:
            ports += [p for p in (_tcp_port(tok) for tok in m.group(1).split()) if p is not None]
    return ports


def _instructions(text: str) -> Iterator[str]:
    current = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        yield current + raw
        current = ""
    if current:
        yield current


def _tcp_port(spec: str) -> int | None:
    port, _, proto = str(spec).partition("/")
    if proto not in ("", "tcp") or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


def _docker_api() -> Any:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        return docker_client.client().api
    except docker.errors.DockerException as e:
        logger.warning("docker engine unreachable", error=str(e))
        raise BuildFailed(f"{UNREACHABLE}: {one_line(str(e))}", hint="is dockerd running?") from None


def _api_call(fn: Callable[[], T]) -> T:
    """Run a docker SDK call; an engine that went away is a BuildFailed, not a traceback."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        return fn()
    except (requests.exceptions.ConnectionError, docker.errors.APIError, docker.errors.DockerException) as e:
        if isinstance(e, docker.errors.APIError):
            raise BuildFailed(f"docker build failed: {one_line(e.explanation or str(e))}") from None
        logger.warning("docker engine unreachable", error=str(e))
        raise BuildFailed(f"{UNREACHABLE}: {one_line(str(e))}", hint="is dockerd running?") from None


def _build_keywords(options: dict[str, Any]) -> dict[str, Any]:
    """docker-options (create_host_config names) as the build API's keywords."""
    names = {"shm_size": "shmsize", "extra_hosts": "extra_hosts", "network_mode": "network_mode"}
    return {names[k]: v for k, v in options.items() if k in names}

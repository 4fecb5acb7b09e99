"""A build container of the stack image: run it with bind mounts, stream its output, commit it as an image.

Bind mounts are not part of a committed image (checked in research/builders.md §5): the source, the
app's config and its cache stay out of it. The container is removed however the build ends.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from builders.dockerfile import UNREACHABLE, clean, one_line
from pushdock import docker_options, resources
from pushdock.errors import BuildFailed

if TYPE_CHECKING:
    from types import TracebackType

    from pushdock.context import Context

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"  # the driver and /start, mounted at /tmp/pushdock
BUILD_TIMEOUT = 3600  # seconds the engine may stay silent (a long compile prints nothing for a while)
MAX_FILE = 1 << 20


class BuildContainer:
    """One build: `with BuildContainer(...) as box: box.run(on_line); box.commit(image, changes)`."""

    def __init__(self, ctx: Context, app: str, builder: str, command: Sequence[str],
                 mounts: Sequence[tuple[Path, str]]):
        """`mounts`: (host path, container path) pairs, read-only except /cache."""
        with engine_errors():
            import docker  # noqa: PLC0415 -- start-up: docker loads when first used

            self.api = docker.from_env(timeout=BUILD_TIMEOUT).api
        self.image = ctx.settings.stack_image
        self.labels = {
            "pushdock.build": app, "pushdock.builder": builder,
            "pushdock.data-dir": str(ctx.settings.data_dir.absolute()),  # tests clean up by this label
        }
        self.name = f"pushdock-build-{app}-{secrets.token_hex(3)}"
        self.command = list(command)
        self.binds = [f"{host}:{inside}:{'rw' if inside == '/cache' else 'ro'}" for host, inside in mounts]
        self.id: str | None = None
        self.limits = resources.for_build(ctx, app)  # a runaway build is killed in its container, not the host
        self.options = docker_options.for_phase(ctx.state, app, "build")  # `docker-options:add APP build ...`

    def __enter__(self) -> BuildContainer:
        with engine_errors():
            try:
                made = self.api.create_container(
                    self.image, command=self.command, name=self.name, labels=self.options.labels | self.labels,
                    user="0:0", working_dir="/",
                    host_config=self.api.create_host_config(**docker_options.host_config(
                        self.options, {"binds": self.binds, **resources.host_config(self.limits)})),
                )
            except Exception as e:
                if "No such image" in str(e):
                    raise BuildFailed(f"the stack image {self.image} is missing",
                                      hint="build it with `pushdock stack:build`") from None
                raise
        self.id = str(made["Id"])
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.id is not None:
            try:
                self.api.remove_container(self.id, force=True, v=True)
            except Exception as e:  # the build's own outcome matters more; say what was left behind
                logger.warning("build container not removed", container=self.name, error=str(e))

    def run(self, on_line: Callable[[str], None]) -> int:
        """Start the container, hand each output line to `on_line`, return its exit status.

        BuildFailed if the kernel killed a process of the build for going over its memory cap."""
        with engine_errors():
            self.api.start(self.id)
            buf = b""
            for chunk in self.api.logs(self.id, stream=True, follow=True, stdout=True, stderr=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    on_line(clean(line.decode(errors="replace")))
            if buf:
                on_line(clean(buf.decode(errors="replace")))
            status = int(self.api.wait(self.id, timeout=BUILD_TIMEOUT).get("StatusCode", -1))
            if (self.api.inspect_container(self.id).get("State") or {}).get("OOMKilled"):
                raise BuildFailed(resources.build_out_of_memory(self.limits))
            return status

    def read_file(self, path: str) -> str | None:
        """A small text file from the (stopped) container, or None if it has none."""
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used

        try:
            stream, _ = self.api.get_archive(self.id, path)
        except docker.errors.NotFound:
            return None
        with engine_errors():
            data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            f = tar.extractfile(member) if member is not None and member.size <= MAX_FILE else None
            return f.read().decode(errors="replace") if f is not None else None

    def add_files(self, directory: str, files: Mapping[str, str], *, uid: int) -> None:
        """Write text files (relative paths) under `directory` of the container, owned by `uid`."""
        if not files:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for d in sorted({str(Path(rel).parent) for rel in files} - {"."}):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, 0o755, uid, uid, time.time()
                tar.addfile(info)
            for rel, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o644, uid, uid, time.time()
                tar.addfile(info, io.BytesIO(data))
        with engine_errors():
            self.api.put_archive(self.id, directory, buf.getvalue())

    def commit(self, image: str, changes: Sequence[str]) -> None:
        """The container's file system (not its mounts) as `image`, with Dockerfile-style `changes`."""
        from docker.utils import parse_repository_tag  # noqa: PLC0415 -- start-up: docker loads when first used

        repository, tag = parse_repository_tag(image)
        started = time.monotonic()
        with engine_errors():
            self.api.commit(self.id, repository=repository, tag=tag or "latest", changes=list(changes))
        logger.info("build container committed", image=image, seconds=round(time.monotonic() - started, 2))


@contextmanager
def engine_errors() -> Iterator[None]:
    """An engine that went away or refused is a BuildFailed, not a traceback."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        yield
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as e:
        if isinstance(e, docker.errors.APIError):
            raise BuildFailed(f"docker: {one_line(e.explanation or str(e))}") from None
        logger.warning("docker engine unreachable", error=str(e))
        raise BuildFailed(f"{UNREACHABLE}: {one_line(str(e))}", hint="is dockerd running?") from None


def image_info(api: Any, image: str) -> dict[str, Any]:
    with engine_errors():
        return dict(api.inspect_image(image))


"""A service on the Docker engine: its image (built locally), private network, data volume and container.

Names carry a short hash of the data dir, so instances side by side on one engine never meet; everything is
labelled `pushdock.data-dir` too. The container restarts unless stopped (engine restarts included) and
publishes no port: only containers on its network (the apps linked to it) reach it, at host
`pushdock-KIND-NAME`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.errors import PushdockError

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Datastore
    from pushdock.progress import Progress
    from services.model import Service

LABEL_DATA_DIR = "pushdock.data-dir"  # as every container pushdock makes (schedulers clean up by it)
LABEL_SERVICE = "pushdock.service"
READY_TIMEOUT = 60.0
BUILD_TIMEOUT = 900

_clients: dict[int, Any] = {}
_lock = threading.Lock()


def client() -> Any:
    pid = os.getpid()
    with _lock:
        if pid not in _clients:
            import docker  # noqa: PLC0415 -- start-up: docker loads when first used

            try:
                _clients.clear()
                _clients[pid] = docker.from_env(timeout=BUILD_TIMEOUT)
            except docker.errors.DockerException as e:
                raise PushdockError(f"cannot reach the Docker engine: {_one_line(e)}") from e
        return _clients[pid]


def _one_line(e: BaseException) -> str:
    return " ".join(str(getattr(e, "explanation", None) or e or type(e).__name__).split())


@contextlib.contextmanager
def engine_errors(doing: str) -> Iterator[None]:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise PushdockError(f"{doing}: Docker engine error: {_one_line(e)}") from e


def _data_dir(ctx: Context) -> str:
    return str(ctx.settings.data_dir.absolute())


def resource_name(ctx: Context, service: Service) -> str:
    """Container, network and volume name: pushdock-<data dir hash>-KIND-NAME."""
    tag = hashlib.sha256(_data_dir(ctx).encode()).hexdigest()[:8]
    return f"pushdock-{tag}-{service.kind}-{service.name}"


def host(service: Service) -> str:
    """The service's host name on its network."""
    return f"pushdock-{service.kind}-{service.name}"


def labels(ctx: Context, service: Service) -> dict[str, str]:
    return {LABEL_DATA_DIR: _data_dir(ctx), LABEL_SERVICE: f"{service.kind}/{service.name}"}


# -- image ------------------------------------------------------------------------------------------------
def image_exists(ds: Datastore) -> bool:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        client().images.get(ds.image)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_image(ds: Datastore, progress: Progress) -> None:
    """Build ds.image FROM the stack image with Debian's package (apt from deb.debian.org, no registry)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (content, mode) in ds.build_files().items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    buf.seek(0)
    progress.step(f"Building {ds.image} ({ds.title}, from Debian's packages)")
    started = time.monotonic()
    last: list[str] = []
    with engine_errors(f"building {ds.image}"):
        for chunk in client().api.build(fileobj=buf, custom_context=True, tag=ds.image, rm=True, forcerm=True,
                                        pull=False, decode=True, labels={"pushdock.service-image": ds.kind}):
            if "error" in chunk:
                raise PushdockError(f"building {ds.image} failed: {' '.join(str(chunk['error']).split())[:300]}")
            text = str(chunk.get("stream", "")).strip()
            if text:
                last = [*last[-19:], text]
    logger.info("service image built", image=ds.image, seconds=round(time.monotonic() - started, 1))
    progress.detail(f"built in {time.monotonic() - started:.0f}s")


def ensure_image(ds: Datastore, progress: Progress, *, force: bool = False) -> None:
    if force or not image_exists(ds):
        build_image(ds, progress)


# -- container ----------------------------------------------------------------------------------------------
def container(ctx: Context, service: Service) -> Any | None:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        return client().containers.get(resource_name(ctx, service))
    except docker.errors.NotFound:
        return None


def start(ctx: Context, ds: Datastore, service: Service, password: str) -> None:
    """Network, volume and container (created once; started if stopped), then wait until it answers."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    name, api = resource_name(ctx, service), client().api
    with engine_errors(f"starting {service.kind} service {service.name}"):
        try:
            client().networks.get(name)
        except docker.errors.NotFound:
            client().networks.create(name, driver="bridge", labels=labels(ctx, service))
        try:
            client().volumes.get(name)
        except docker.errors.NotFound:
            client().volumes.create(name, labels=labels(ctx, service))
        c = container(ctx, service)
        if c is None:
            published = {ds.port: service.exposed} if service.exposed else None  # `KIND:expose`, else no port
            made = api.create_container(
                ds.image, name=name, hostname=host(service), labels=labels(ctx, service),
                environment=ds.environment(service.name, password), use_config_proxy=False,
                stop_signal=ds.stop_signal, ports=[ds.port] if published else None,
                networking_config=api.create_networking_config(
                    {name: api.create_endpoint_config(aliases=[host(service)])}),
                host_config=api.create_host_config(
                    init=True, restart_policy={"Name": "unless-stopped"}, port_bindings=published,
                    binds={name: {"bind": ds.data_path, "mode": "rw"}}, network_mode=name),
            )
            c = client().containers.get(made["Id"])
        if c.status != "running":
            c.start()
        _join_overlay(ctx, service, c)
    wait_ready(ctx, ds, service)


def overlay_name(ctx: Context, service: Service) -> str:
    return f"{resource_name(ctx, service)}-swarm"


def overlay(ctx: Context, service: Service) -> str:
    """The service's attachable overlay network (made on first use), the service's container on it as
    `pushdock-KIND-NAME`: how tasks of swarm apps linked to it reach it. Its name."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    name = overlay_name(ctx, service)
    with engine_errors(f"joining {service.kind} service {service.name} to the swarm"):
        try:
            client().networks.get(name)
        except docker.errors.NotFound:
            client().networks.create(name, driver="overlay", attachable=True, labels=labels(ctx, service))
        c = container(ctx, service)
        if c is not None:
            _join_overlay(ctx, service, c)
    return name


def _join_overlay(ctx: Context, service: Service, c: Any) -> None:
    """A (re)made container joins the overlay network if the service has one."""
    name = overlay_name(ctx, service)
    if not any(n.name == name for n in client().networks.list(names=[name])):
        return  # no swarm app was ever linked
    c.reload()
    if name in (c.attrs.get("NetworkSettings", {}).get("Networks") or {}):
        return
    client().api.connect_container_to_network(c.id, name, aliases=[host(service)])


def wait_ready_container(c: Any, ds: Datastore, name: str, what: str, timeout: float = READY_TIMEOUT) -> None:
    """Until the readiness command answers 0 in container `c` (PushdockError if it exits or times out)."""
    deadline = time.monotonic() + timeout
    while True:
        c.reload()
        if c.status in ("exited", "dead"):
            raise PushdockError(f"{what} exited: {last_lines(c)}")
        if c.status == "running" and c.exec_run(ds.ready_argv(name))[0] == 0:
            return
        if time.monotonic() > deadline:
            raise PushdockError(f"{what} did not answer within {timeout:.0f}s")
        time.sleep(0.3)


def wait_ready(ctx: Context, ds: Datastore, service: Service, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        c = container(ctx, service)
        if c is not None and c.status in ("exited", "dead"):
            raise PushdockError(f"{service.kind} service {service.name} exited: {last_lines(c)}")
        if c is not None:
            with engine_errors(f"checking {service.kind} service {service.name}"):
                code, _ = c.exec_run(ds.ready_argv(service.name))
            if code == 0:
                return
        if time.monotonic() > deadline:
            raise PushdockError(f"{service.kind} service {service.name} did not answer within {timeout:.0f}s "
                                f"({service.kind}:logs {service.name})")
        time.sleep(0.3)


def last_lines(c: Any) -> str:
    raw = c.logs(tail=3).decode(errors="replace")
    return " | ".join(line.strip() for line in raw.splitlines() if line.strip())[-300:] or "no output"


def running(ctx: Context, service: Service) -> Any:
    c = container(ctx, service)
    if c is None or c.status != "running":
        raise PushdockError(f"{service.kind} service {service.name} is not running ({service.kind}:restart "
                            f"{service.name} starts it)")
    return c


def restart(ctx: Context, ds: Datastore, service: Service, password: str) -> None:
    """Restart; a container of an older image (`KIND:rebuild-image` since) is recreated on the new one (the data
    is in the volume)."""
    c = container(ctx, service)
    with engine_errors(f"restarting {service.kind} service {service.name}"):
        if c is not None and c.image.id != client().images.get(ds.image).id:
            c.stop(timeout=30)
            c.remove()
            c = None
        if c is None:
            start(ctx, ds, service, password)
            return
        c.restart(timeout=30)
    wait_ready(ctx, ds, service)


def recreate(ctx: Context, ds: Datastore, service: Service, password: str) -> None:
    """A new container for the service as its record says now (its published port); the data is in the volume."""
    c = container(ctx, service)
    with engine_errors(f"recreating {service.kind} service {service.name}"):
        if c is not None:
            c.stop(timeout=30)
            c.remove(force=True)
    try:
        start(ctx, ds, service, password)
    except PushdockError:
        c = container(ctx, service)  # created but not started (its port taken): gone, so a retry starts clean
        if c is not None and c.status != "running":
            with engine_errors(f"recreating {service.kind} service {service.name}"):
                c.remove(force=True)
        raise


def logs(ctx: Context, service: Service, tail: int) -> bytes:
    c = container(ctx, service)
    if c is None:
        raise PushdockError(f"{service.kind} service {service.name} has no container")
    with engine_errors(f"reading the logs of {service.kind} service {service.name}"):
        return bytes(c.logs(tail=tail))


def remove(ctx: Context, service: Service) -> None:
    """Container, network and data volume, in that order (the volume is the data: last)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    name = resource_name(ctx, service)
    with engine_errors(f"removing {service.kind} service {service.name}"):
        c = container(ctx, service)
        if c is not None:
            c.remove(force=True)
        for coll, each in ((client().networks, name), (client().networks, overlay_name(ctx, service)),
                           (client().volumes, name)):
            try:
                coll.get(each).remove()
            except docker.errors.NotFound:
                pass


def attach_exec(ctx: Context, service: Service, argv: list[str], *, tty: bool) -> int:
    """argv in the service's container, attached to this process's stdio (pushdock.attach); its exit status."""
    from pushdock import attach  # noqa: PLC0415 -- start-up: loads only when this path runs

    c = running(ctx, service)
    with engine_errors(f"running a command in {service.kind} service {service.name}"):
        return attach.exec_in(client().api, c.id, argv, tty=tty)

"""How a release's image reaches the swarm nodes that run its tasks.

Images are built on the manager (this engine). Then, in order of preference:
1. a registry is set (`registry:set --global server HOST`): tag `HOST/pushdock/APP:vN`, push, and the
   services name it by digest, so every node pulls exactly what was built;
2. a node's engine address is set (`swarm:set NODE engine tcp://...`): stream the image to it
   (`docker save | docker load` through the SDK, never touching the disk) when it lacks it;
3. otherwise the services get `node.id!=X` constraints for every node without the image, so tasks
   land only where the image is (on one node: here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.errors import PushdockError
from schedulers import engine as eng
from schedulers.swarm.settings import registry_server

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release
    from schedulers.swarm.nodes import Node

CHUNK = 1024 * 1024


@dataclass
class Placement:
    image: str  # what the services run
    constraints: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # hostnames of nodes tasks avoid (no image)


def registry_name(server: str, app: str, number: int) -> str:
    return f"{server}/pushdock/{app}:v{number}"


def prepare(ctx: Context, release: Release, nodes: list[Node], progress: Progress) -> Placement:
    """Make the release's image available where its tasks may run; PushdockError (one line) if it cannot."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used


    client = eng.client()
    try:
        local = client.images.get(release.image)
    except docker.errors.ImageNotFound:
        raise PushdockError(
            f"image {release.image} is not on this node's Docker engine: rebuild it (`ps:rebuild {release.app}`)"
        ) from None
    server = registry_server(ctx, release.app)
    if server:
        name = registry_name(server, release.app, release.number)
        progress.step(f"Pushing {name}")
        digest = push(local, name)
        return Placement(f"{name}@{digest}" if digest else name)
    placement = Placement(release.image)
    for node in nodes:
        if node.local or not node.schedulable:
            continue
        if node.engine:
            stream_to(node, release.image, local.id, progress)
            continue
        placement.constraints.append(f"node.id!={node.id}")
        placement.skipped.append(node.hostname or node.id[:12])
    if placement.skipped:
        progress.detail(
            f"no registry and no engine address for {', '.join(placement.skipped)}: tasks run only on nodes "
            "with the image (see `registry:set` and `swarm:set NODE engine URL`)"
        )
    return placement


def push(image: Any, name: str) -> str | None:
    """Tag and push; the pushed digest (or None if the registry did not say). PushdockError on failure."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    repo, _, tag = name.rpartition(":")
    try:
        image.tag(repo, tag)
        digest = None
        for chunk in eng.client().images.push(repo, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise PushdockError(f"could not push {name}: {' '.join(str(chunk['error']).split())}")
            aux = chunk.get("aux") or {}
            digest = aux.get("Digest") or digest
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise PushdockError(f"could not push {name}: {eng.one_line(e)}") from e
    logger.info("image pushed", image=name, digest=digest)
    return str(digest) if digest else None


def stream_to(node: Node, image: str, image_id: str, progress: Progress) -> None:
    """`docker save IMAGE | docker load` into the node's engine, unless it has this image already."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        remote = docker.DockerClient(base_url=node.engine, timeout=600)
        try:
            if remote.images.get(image).id == image_id:
                return
        except docker.errors.ImageNotFound:
            pass
        progress.step(f"Sending {image} to node {node.hostname}")
        stream_image(eng.client(), remote, image)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise PushdockError(f"could not send {image} to node {node.hostname} ({node.engine}): {eng.one_line(e)}") from e


def stream_image(source: Any, target: Any, image: str) -> None:
    """Save from one engine straight into another's load endpoint (chunked upload, no temp file)."""
    result = target.api.load_image(source.api.get_image(image, chunk_size=CHUNK))
    for chunk in result or []:
        if isinstance(chunk, dict) and chunk.get("error"):
            raise PushdockError(f"loading {image} failed: {' '.join(str(chunk['error']).split())}")
    logger.info("image streamed", image=image)

"""Built-in implementations of lifecycle triggers that belong to no single component."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from loguru import logger

from pushdock import docker_client
from pushdock.specs import hookimpl

if TYPE_CHECKING:
    from pushdock.chain import Pipeline
    from pushdock.context import Context


# What the hooks below import lazily: serve's zygote imports it once (pushdock/zygote.py, bus.warm_builtins).
WARM = (
    "hooks.pipeline", "hooks.blobs", "docker",
)


@hookimpl
def pipeline() -> Pipeline | None:
    from hooks import pipeline as chain  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return chain


@hookimpl
def pre_delete(ctx: Context, app: str) -> None:
    ctx.proxy().remove(ctx, app)
    ctx.scheduler(app).stop(ctx, app)


@hookimpl
def post_delete(ctx: Context, app: str) -> None:
    """The app's release images (pushdock/APP:vN) go with it, so destroyed apps do not fill the disk."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        client = docker_client.client()
        # one engine call: `images.list` inspects each image it listed, and a push's pruning (after its answer)
        # may remove one in between
        images = client.api.images(name=f"pushdock/{app}")
    except docker.errors.DockerException as e:
        logger.warning("could not list the app's images", app=app, error=str(e))
        return
    # by tag, never by id: another app's identical build is the same image (same id) under its own tag
    tags = [t for image in images for t in image.get("RepoTags") or [] if t.startswith(f"pushdock/{app}:")]
    for tag in tags:
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(tag, force=True)
    logger.info("app images removed", app=app, count=len(tags))

"""The built-in builders plugin: the dockerfile, herokuish and pack builders, their commands and hooks.

Imports stay cheap: every CLI start loads this module; builders, click groups and docker load when used.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushdock.specs import hookimpl

if TYPE_CHECKING:
    import click

    from pushdock.context import Context


# What the hooks below import lazily: serve's zygote imports it once (pushdock/zygote.py, bus.warm_builtins).
WARM = (
    "builders.commands", "builders.detect", "builders.dockerfile", "builders.herokuish", "builders.pack",
    "builders.properties", "builders.build_container", "builders.buildpack_source",
)


@hookimpl
def register_builders() -> dict[str, Any]:
    from builders.dockerfile import DockerfileBuilder  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from builders.herokuish import HerokuishBuilder  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from builders.pack import PackBuilder  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return {"dockerfile": DockerfileBuilder(), "herokuish": HerokuishBuilder(), "pack": PackBuilder()}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from builders.commands import COMMANDS  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    for cmd in COMMANDS:
        cli.add_command(cmd)


@hookimpl
def post_extract(ctx: Context, app: str, build_dir: str, sha: str) -> None:
    """The app's buildpack list becomes `.buildpacks` (unless the tree or BUILDPACK_URL chooses), as Dokku does."""
    from builders.herokuish import write_app_list  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    write_app_list(ctx.state, app, Path(build_dir), ctx.state.get_env(app))


@hookimpl
def post_delete(ctx: Context, app: str) -> None:
    """The app's build cache goes with it."""
    shutil.rmtree(ctx.state.path("cache", app), ignore_errors=True)


@hookimpl
def purge_cache(ctx: Context, app: str) -> str | None:
    """Empty the herokuish cache (CACHE_DIR of the buildpacks) and make the next Dockerfile build skip the
    engine's layer cache (shared by every app: not emptied); the next build starts from scratch."""
    from builders import properties  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    ctx.state.set(properties.DOCKERFILE, app, properties.NO_CACHE, "1")
    purged = "Dockerfile layer cache (the next build runs without it)"
    cache = ctx.state.path("cache", app)
    if not cache.is_dir():
        return purged
    size = sum(p.lstat().st_size for p in cache.rglob("*"))
    for entry in cache.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return f"herokuish cache ({size / (1 << 20):.1f} MiB), {purged}"


@hookimpl
def post_app_rename(ctx: Context, old_app: str, new_app: str) -> None:
    old, new = ctx.state.path("cache", old_app), ctx.state.path("cache", new_app)
    if old.exists() and not new.exists():
        old.rename(new)

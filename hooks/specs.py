"""Every trigger pushdock fires, declared once.

Python name in snake_case; the script name is the same word in kebab-case (`post_deploy` ->
`DATA_DIR/plugins/<plugin>/post-deploy`), called with the arguments below in order, as strings.
Script stdout is the trigger's result; a non-zero exit is `HookFailed`. Python implementations also
receive `ctx` (the Context) first; scripts do not (they read what they need through `pushdock` commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:

    import click

    from pushdock.context import Context

hookspec = pluggy.HookspecMarker("pushdock")
hookimpl = pluggy.HookimplMarker("pushdock")

# Triggers that are registries (they return objects) are Python-only; scripts cannot implement them.
PYTHON_ONLY = frozenset(
    {"register_commands", "register_builders", "register_schedulers", "register_proxies", "register_services",
     "timer_jobs"}
)


# -- registries (built-ins are plugins too) -------------------------------------------------------
@hookspec
def register_commands(cli: click.Group) -> None:
    """At CLI start-up: add click commands or groups to `cli`."""


@hookspec
def register_builders() -> dict[str, Any]:
    """At start-up: return {name: Builder} for the builders this plugin provides."""
    return {}


@hookspec
def register_schedulers() -> dict[str, Any]:
    """At start-up: return {name: Scheduler} for the schedulers this plugin provides."""
    return {}


@hookspec
def register_proxies() -> dict[str, Any]:
    """At start-up: return {name: Proxy} for the proxies this plugin provides."""
    return {}


# -- app lifecycle ---------------------------------------------------------------------------------
@hookspec
def post_create(ctx: Context, app: str) -> None:
    """After `apps:create` (or a first push) made the app."""


@hookspec
def pre_delete(ctx: Context, app: str) -> None:
    """Before `apps:destroy` removes the app's files: stop what runs, drop routes."""


@hookspec
def post_delete(ctx: Context, app: str) -> None:
    """After the app and its files are gone."""


@hookspec
def post_app_rename(ctx: Context, old_app: str, new_app: str) -> None:
    """After `apps:rename` moved the app's files."""


# -- the pipeline: receive -> builder-detect -> build -> release -> scheduler-deploy -> post-deploy --
@hookspec
def post_extract(ctx: Context, app: str, build_dir: str, sha: str) -> None:
    """After the pushed tree was exported to `build_dir`; may rewrite files there."""


@hookspec(firstresult=True)
def builder_detect(ctx: Context, app: str, build_dir: str) -> str | None:
    """Before the built-in detection: return a builder name to force it, or None."""


@hookspec
def pre_build(ctx: Context, app: str, builder: str, build_dir: str) -> None:
    """Before the builder runs."""


@hookspec
def post_build(ctx: Context, app: str, builder: str, image: str) -> None:
    """After the image was built and tagged."""


@hookspec
def pre_release(ctx: Context, app: str, release: int, image: str) -> None:
    """After the release record is made, before any of its containers start."""


@hookspec
def pre_deploy(ctx: Context, app: str, release: int, image: str) -> None:
    """Before the scheduler starts the release's containers."""


@hookspec
def post_deploy(ctx: Context, app: str, release: int, image: str) -> None:
    """After the release serves traffic and the old containers retired."""


@hookspec
def post_config_update(ctx: Context, app: str, action: str, keys: list[str]) -> None:
    """After `config:set` / `config:unset` (action is `set` or `unset`); keys only, never values."""


@hookspec
def post_settings_change(ctx: Context, app: str, summary: str) -> None:
    """After a command changed an app's settings (env, scale, domains, builder, checks...).

    `summary` is the command line with secret values removed (e.g. `config:set KEY1 KEY2`). The built-in
    git plugin commits the app's settings to refs/meta/config with it as the message.
    """


@hookspec
def purge_cache(ctx: Context, app: str) -> str | None:
    """At `repo:purge-cache`: empty the app's build caches; a few words on what was purged (None: nothing)."""


@hookspec
def post_app_clone(ctx: Context, old_app: str, new_app: str) -> None:
    """After `apps:clone` copied the repo and settings of old_app to new_app, before the clone deploys."""


# -- services: datastores an app links to (services/, docs/services.md) -------------------------------
@hookspec
def register_services() -> dict[str, Any]:
    """Return {kind: Datastore} (services.base.Datastore): `postgres`, `redis`; a plugin adds its own kinds."""


@hookspec
def app_networks(ctx: Context, app: str) -> list[str]:
    """Docker networks every new container of `app` joins (besides the default one): the private networks of
    the services linked to it. Fired by docker-local when it creates a process, `run` or release-phase
    container, and by swarm when it creates a service or a release/cron task (for a swarm app the names must be
    swarm-scoped: attachable overlays); a script prints network names, one per line."""


@hookspec
def post_service_create(ctx: Context, service: str, name: str) -> None:
    """After service `name` of kind `service` (`postgres`) was created and answers."""


@hookspec
def post_service_link(ctx: Context, service: str, name: str, app: str) -> None:
    """After `app` was linked to the service (its URL variable is set and the app redeployed)."""


@hookspec
def post_service_unlink(ctx: Context, service: str, name: str, app: str) -> None:
    """After `app` was unlinked from the service (its URL variable is unset and the app redeployed)."""


@hookspec
def pre_service_destroy(ctx: Context, service: str, name: str) -> None:
    """Before the service's container, network and data volume are removed; raise to refuse."""


# -- serve's timer (pushdock/timer.py) ------------------------------------------------------------------
@hookspec
def timer_jobs(ctx: Context) -> dict[str, tuple[str, Any]]:
    """{name: (cron expression, function)}: periodic jobs for serve's one timer (scheduled backups, letsencrypt's
    daily renewal). Asked every few seconds, so a change takes effect soon; a job no longer returned is removed.
    Python only."""

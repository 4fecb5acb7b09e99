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

    from pushdock.chain import Pipeline
    from pushdock.context import Context

hookspec = pluggy.HookspecMarker("pushdock")
hookimpl = pluggy.HookimplMarker("pushdock")

# Triggers that are registries (they return objects) are Python-only; scripts cannot implement them.
PYTHON_ONLY = frozenset(
    {"register_commands", "register_builders", "register_schedulers", "register_proxies", "register_services",
     "timer_jobs", "webhook_event", "clone_app_services", "app_copy_services", "http_routes", "http_door",
     "app_summary", "pipeline"}
)


# -- registries (built-ins are plugins too) -------------------------------------------------------
@hookspec(firstresult=True)
def pipeline() -> Pipeline | None:
    """The deploy chain the core's commands enter (`Context.pipeline`): the built-in `pipeline` plugin answers."""


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


@hookspec
def http_routes(ctx: Context) -> list[Any]:
    """When the HTTP door starts: return the routes and WSGI mounts (pushdock/httproutes.py) this plugin serves."""
    return []


@hookspec(firstresult=True)
def http_door(ctx: Context, health: Any) -> Any:
    """When `serve` starts: return the HTTP door (an object with start() -> (host, port) and stop()), serving every
    plugin's http-routes; `health()` returns what `/healthz` adds (the apps still being reconciled)."""


@hookspec
def app_summary(ctx: Context, app: str) -> dict[str, str]:
    """When the dashboard lists apps: return {label: value} facts this plugin owns about `app` (the proxies
    plugin: its certificate's expiry). Cheap: it is called once per app per page."""
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
    """Return {kind: Datastore} (pushdock.datastore.Datastore): `postgres`, `redis`; a plugin adds its own kinds."""
    return {}


@hookspec
def app_networks(ctx: Context, app: str) -> list[str]:
    """Docker networks every new container of `app` joins (besides the default one): the private networks of
    the services linked to it. Fired by docker-local when it creates a process, `run` or release-phase
    container, and by swarm when it creates a service or a release/cron task (for a swarm app the names must be
    swarm-scoped: attachable overlays); a script prints network names, one per line."""
    return []


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
    return {}


# -- webhooks and preview apps (gitserver/webhooks.py, previews/; docs/previews.md) ---------------------------
@hookspec
def webhook_event(ctx: Context, app: str, event: str, delivery: str, payload: dict[str, Any]) -> tuple[int, str] | None:
    """A signed GitHub delivery to `app` of an event the git server does not handle itself (not `push` or `ping`),
    its repository already checked: return (HTTP status, outcome) if this plugin handles `event`, else None.
    Answer at once (GitHub waits): long work goes to a worker. The first answer wins. Python only."""


@hookspec(firstresult=True)
def fetch_commit(ctx: Context, app: str, into: str, ref: str, sha: str) -> str | None:
    """Bring commit `sha` (the tip of `ref`, e.g. refs/pull/7/head) of the repository set for `app`'s webhook
    into the repository of app `into`, with the webhook's credentials. Returns None once `sha` is there, else
    why it is not (the first answer wins)."""


@hookspec
def commit_status(ctx: Context, app: str, sha: str, state: str, description: str,  # noqa: PLR0917 (argv order)
                  target_url: str) -> None:
    """Report a deploy's progress on commit `sha` of `app`'s repository: state `pending`, `success`, `failure` or
    `error` (GitHub's commit statuses; the git server posts them when `webhooks:set APP token` is set).
    Best effort: an implementation logs its own failures and never raises."""


@hookspec
def clone_app_services(ctx: Context, source_app: str, app: str, data: str) -> list[str]:
    """Give `app` services of its own, one for each service linked to `source_app`, linked to `app` (its URL
    variables set, no deploy): `data` `empty`, or `clone` (restored from the source service's newest verified
    backup; kinds without backups start empty). Returns them as `KIND:NAME`. Python only."""
    return []


@hookspec
def app_copy_services(ctx: Context, app: str) -> list[str]:
    """The services `clone-app-services` made for `app` (`KIND:NAME`), including any whose maker died before it
    returned them. Python only."""
    return []


@hookspec
def destroy_app_services(ctx: Context, services: list[str]) -> None:
    """Unlink and destroy services (`KIND:NAME`, as `clone-app-services` returned them) with their data."""

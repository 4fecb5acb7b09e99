"""The git server as a plugin: its commands, and refs/meta/config kept in step with the settings.

Imports stay cheap here: the work happens in modules imported inside the hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushdock.specs import hookimpl

if TYPE_CHECKING:
    import click

    from pushdock.context import Context


# What the hooks below import lazily: serve's zygote imports it once (pushdock/zygote.py, bus.warm_builtins).
WARM = (
    "gitserver.commands", "gitserver.git_commands", "gitserver.repo_commands", "gitserver.configref",
    "gitserver.webhook_store", "dulwich.config", "dulwich.worktree", "dulwich.trailers",
)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gitserver.commands import serve_cmd, ssh_keys, tokens  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from gitserver.git_commands import git, webhooks  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from gitserver.repo_commands import repo  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    cli.add_command(serve_cmd, name="serve")
    for group in (ssh_keys, tokens, git, webhooks, repo):
        cli.add_command(group)


@hookimpl
def post_settings_change(ctx: Context, app: str, summary: str) -> None:
    """Commit the app's settings to refs/meta/config. Takes the app lock: fire this after releasing it."""
    from gitserver import configref  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    configref.record(ctx, app, summary)


@hookimpl
def post_create(ctx: Context, app: str) -> None:
    """An initial refs/meta/config commit, so `git fetch pushdock refs/meta/config` works from the start."""
    from gitserver import configref  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    configref.record(ctx, app, f"apps:create {app}")


@hookimpl
def post_delete(ctx: Context, app: str) -> None:
    from gitserver import webhook_store  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    webhook_store.forget_secrets(ctx, app)


@hookimpl
def post_app_rename(ctx: Context, old_app: str, new_app: str) -> None:
    from gitserver import webhook_store  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    webhook_store.rename_secrets(ctx, old_app, new_app)


@hookimpl
def fetch_commit(ctx: Context, app: str, into: str, ref: str, sha: str) -> str | None:
    from gitserver import github  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return github.fetch_commit(ctx, app, into, ref, sha)


@hookimpl
def commit_status(ctx: Context, app: str, sha: str, state: str, description: str,  # noqa: PLR0917 (the spec)
                  target_url: str) -> None:
    from gitserver import github  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    github.post_status(ctx, app, sha, state=state, description=description, target_url=target_url)


@hookimpl
def http_routes(ctx: Context) -> list[object]:
    from gitserver.http import routes  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return list(routes(ctx))

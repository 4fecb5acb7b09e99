"""run APP CMD... — a one-off container of the current release with the app's env; its exit status is ours."""

from __future__ import annotations

import os
import sys

import click

from pushdock.apps import authorize
from pushdock.context import Context
from pushdock.errors import NotFound, UsageError


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--no-tty", "-T", is_flag=True, help="Never allocate a terminal, even when attached to one.")
@click.argument("app")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(ctx: Context, app: str, command: tuple[str, ...], no_tty: bool) -> int:
    """Run CMD in a one-off container (interactive with `ssh -t`); exits with its status.

    CMD is run as given; a single quoted argument with spaces (`run APP 'echo $HOME'`) runs through
    /bin/sh, and a Procfile process type name runs that type's command.
    """
    authorize(ctx, app)
    ctx.state.require_app(app)
    if not command:
        raise UsageError("nothing to run: give a command, e.g. `run APP env`")
    current = ctx.state.current_release(app)
    if current is None:
        raise NotFound(f"{app} has not been deployed yet: nothing to run")
    # The env as configured now (config:set --no-restart included), the image and commands of the release.
    release = current.with_(env=ctx.state.get_env(app))
    # Returned, not raised: the status is the command's answer, not a pushdock error (no `error:` line).
    return int(ctx.scheduler(app).run(ctx, release, list(command), tty=not no_tty and _on_terminal()))


def _on_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def register(cli: click.Group) -> None:
    cli.add_command(run)

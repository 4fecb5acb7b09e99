"""run APP CMD... (a one-off container of the current release) and enter APP [PROCESS] (a running one)."""

from __future__ import annotations

import os
import re
import sys

import click

from pushdock.apps import authorize, authorized_app
from pushdock.context import Context
from pushdock.errors import NotFound, UsageError

PROCESS_INSTANCE = re.compile(r"^[a-z][a-z0-9_-]{0,29}(?:\.[1-9][0-9]{0,2})?\Z")


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


ENTER_SHELL = ["/bin/sh", "-c", "command -v bash >/dev/null && exec bash || exec sh"]


@click.command("enter", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--container-id", default=None, help="Enter this container (id or name) of the app.")
@click.option("--no-tty", "-T", is_flag=True, help="Never allocate a terminal, even when attached to one.")
@click.argument("app")
@click.argument("args", metavar="[PROCESS] [COMMAND]...", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def enter(ctx: Context, app: str, args: tuple[str, ...], container_id: str | None, no_tty: bool) -> int:
    """Open a shell (or run COMMAND) in a running container of the app: the first of PROCESS (`web`,
    `web.2`), the only process type, or --container-id; interactive with `ssh -t`."""
    authorized_app(ctx, app)
    if args and args[0].startswith("--container-id"):  # Dokku's order: `enter APP --container-id ID [CMD]`
        name, eq, value = args[0].partition("=")
        if name != "--container-id" or (not eq and len(args) < 2):
            raise UsageError("--container-id needs a container id or name")
        container_id, args = (value, args[1:]) if eq else (args[1], args[2:])
    process, command = (None, list(args)) if container_id else (args[0] if args else None, list(args[1:]))
    if process is not None and not PROCESS_INSTANCE.match(process):
        raise UsageError(f"invalid process {process[:40]!r}: a process type (`web`) or instance (`web.2`)")
    scheduler = ctx.scheduler(app)
    enter_in = getattr(scheduler, "enter", None)
    if enter_in is None:
        raise UsageError(f"the {scheduler.name} scheduler cannot enter containers: use `run {app} ...`")
    return int(enter_in(ctx, app, command or ENTER_SHELL, process=process, container_id=container_id,
                        tty=not no_tty and _on_terminal()))


def _on_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def register(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(enter)

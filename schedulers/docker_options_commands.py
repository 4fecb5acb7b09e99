"""docker-options:add|remove|clear|report — container options of an app per phase (Dokku's names and shapes).

The model is pushdock/docker_options.py. As in Dokku, a change restarts nothing: it applies from the next deploy
(`ps:rebuild APP` or `ps:restart APP` for the deploy phase, the next `run` for the run phase, the next build for
the build phase), so several options can be set before one restart. Every change is recorded in
refs/meta/config (`[docker_options]` of pushdock.toml). Options that weaken the host's isolation are refused for
deployers; an admin's are accepted with a warning line and a `docker-options:flagged` audit event.
"""

from __future__ import annotations

import click

from pushdock import docker_options
from pushdock.apps import authorized_app
from pushdock.commands import format_option, group, print_report
from pushdock.context import Context
from pushdock.docker_options import PHASES
from pushdock.errors import UsageError


@group("docker-options", "Container options of an app's build, deploy and run phases.", default_verb="report")
def docker_options_group() -> None:
    pass


def _changed(ctx: Context, app: str, summary: str) -> None:
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=summary)
    click.echo("-----> Stored; takes effect on the next deploy (ps:rebuild or ps:restart to apply it now)")


RAW = {"ignore_unknown_options": True, "allow_interspersed_args": False}  # the option's words are arguments


@docker_options_group.command("add", context_settings=RAW)
@click.argument("app")
@click.argument("phases", metavar="PHASE[,PHASE...]")
@click.argument("option", nargs=-1, required=True)
@click.pass_obj
def add(ctx: Context, app: str, phases: str, option: tuple[str, ...]) -> None:
    """Add a docker option to the app's phases (build, deploy, run), e.g. deploy,run "--shm-size 256m"."""
    authorized_app(ctx, app)
    wanted = docker_options.parse_phases(phases)
    text = " ".join(option)
    parsed = docker_options.parse(text)
    flagged = docker_options.authorize(ctx, [parsed])
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        current = docker_options.stored(ctx.state, app)
        for phase in wanted:
            if text in current.get(phase, []):
                raise UsageError(f"{app} already has {text!r} in phase {phase}")
            docker_options.check_phase_list([*current.get(phase, []), text])
        for phase in wanted:
            current[phase] = [*current.get(phase, []), text]
        docker_options.store(ctx.state, app, current)
    for reason in flagged:
        click.echo(f" !     warning: {reason} (accepted: you are an admin)")
    if flagged:
        ctx.event("docker-options:flagged", app=app, option=text[:200], phases=wanted, flagged=flagged)
    _changed(ctx, app, f"docker-options:add {app} {','.join(wanted)} {text}")


@docker_options_group.command("remove", context_settings=RAW)
@click.argument("app")
@click.argument("phases", metavar="PHASE[,PHASE...]")
@click.argument("option", nargs=-1, required=True)
@click.pass_obj
def remove(ctx: Context, app: str, phases: str, option: tuple[str, ...]) -> None:
    """Remove a docker option (as it was added) from the app's phases."""
    authorized_app(ctx, app)
    wanted = docker_options.parse_phases(phases)
    text = " ".join(option)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        current = docker_options.stored(ctx.state, app)
        missing = [p for p in wanted if text not in current.get(p, [])]
        if missing:
            raise UsageError(f"{app} has no option {text[:60]!r} in phase {missing[0]} "
                             f"(docker-options:report {app} lists them)")
        for phase in wanted:
            current[phase] = [o for o in current[phase] if o != text]
        docker_options.store(ctx.state, app, current)
    _changed(ctx, app, f"docker-options:remove {app} {','.join(wanted)} {text}")


@docker_options_group.command("clear")
@click.argument("app")
@click.argument("phases", metavar="[PHASE[,PHASE...]]", required=False)
@click.pass_obj
def clear(ctx: Context, app: str, phases: str | None) -> None:
    """Remove every docker option of the app, or of the phases given."""
    authorized_app(ctx, app)
    wanted = docker_options.parse_phases(phases) if phases else list(PHASES)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        current = docker_options.stored(ctx.state, app)
        if not any(current.get(p) for p in wanted):
            click.echo(f"-----> {app} has no docker options in {', '.join(wanted)}")
            return
        docker_options.store(ctx.state, app, {p: v for p, v in current.items() if p not in wanted})
    _changed(ctx, app, f"docker-options:clear {app} {','.join(wanted)}")


@docker_options_group.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's docker options per phase (Dokku's keys: `docker options build|deploy|run`)."""
    authorized_app(ctx, app)
    current = docker_options.stored(ctx.state, app)
    if fmt == "json":
        print_report(f"{app} docker options", {f"docker-options-{p}": current.get(p, []) for p in PHASES}, fmt)
        return
    print_report(f"{app} docker options", {f"Docker options {p}": " ".join(current.get(p, [])) for p in PHASES},
                 fmt)


COMMANDS = [docker_options_group]

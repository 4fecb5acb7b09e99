"""ps:report|restart|stop|start|scale|rebuild — the app's processes."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from pushdock.apps import authorized_app
from pushdock.commands import echo_progress, format_option, group, print_table
from pushdock.context import Context
from pushdock.errors import NotFound, UsageError
from pushdock.state import PROCESS_NAME

SCALE_ARG = re.compile(r"^([a-z][a-z0-9_-]{0,29})=(\d{1,3})$")
MAX_SCALE = 50
RESTART_POLICY = re.compile(r"^(?:no|always|unless-stopped|on-failure(?::(\d{1,4}))?)\Z")
DEFAULT_POLICY = "unless-stopped"


@group("ps", "Manage an app's processes.", default_verb="report")
def ps() -> None:
    pass


@ps.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show each container: process, release, state, restarts, address."""
    authorized_app(ctx, app)
    current = ctx.state.current_release(app)
    rows: list[dict[str, Any]] = [
        {"process": f"{i.process}.{i.index}", "release": f"v{i.release}", "state": crash_state(i.state, i.restarts),
         "restarts": i.restarts, "address": str(i.upstream or ""), "container": i.name}
        for i in sorted(ctx.scheduler(app).instances(ctx, app), key=lambda i: (i.process, i.index))
    ]
    if fmt == "text":
        stopped = bool(ctx.state.get("ps", app, "stopped"))
        click.echo(f"=====> {app} processes (release {current.name if current else 'none'}"
                   f"{', stopped' if stopped else ''})")
        if current:
            click.echo("       formation: " + " ".join(f"{k}={v}" for k, v in current.formation.items())
                       + (" (from app.json: ps:scale is off)" if current.formation_fixed else ""))
        click.echo(f"       restart policy: {ctx.state.get('ps', app, 'restart-policy') or DEFAULT_POLICY}")
        for r in rows:
            if r["state"] == "crash-looping":
                click.echo(f"       warning: {r['process']} is crash-looping (restarted {r['restarts']}x; "
                           f"see `logs {app} -p {r['process'].split('.')[0]}`)")
            elif r["restarts"]:
                click.echo(f"       note: {r['process']} crashed and was restarted {r['restarts']}x")
    print_table(rows, ["process", "release", "state", "restarts", "address", "container"], fmt)


def crash_state(state: str, restarts: int) -> str:
    """The engine's state, or `crash-looping` for an instance the engine keeps restarting."""
    if state == "restarting" or (restarts > 0 and state != "running"):
        return "crash-looping"
    return state


@ps.command("restart")
@click.argument("app")
@click.argument("process", required=False)
@click.pass_obj
def restart(ctx: Context, app: str, process: str | None) -> None:
    """Replace every container (or those of PROCESS) with fresh ones, with zero downtime."""
    _restart(ctx, app, process)


@ps.command("start")
@click.argument("app")
@click.pass_obj
def start(ctx: Context, app: str) -> None:
    """Start a stopped app."""
    _restart(ctx, app, None)  # same work: fresh containers of the current release


def _restart(ctx: Context, app: str, process: str | None) -> None:
    authorized_app(ctx, app)
    if process is not None and not PROCESS_NAME.match(process):
        raise UsageError(f"invalid process type {process[:40]!r}")
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        if ctx.pipeline.restart(ctx, app, echo_progress(), process=process) is None:
            raise NotFound(f"{app} has not been deployed yet")


@ps.command("stop")
@click.argument("app")
@click.pass_obj
def stop(ctx: Context, app: str) -> None:
    """Stop every container; the app's domains answer 503 until `ps:start`."""
    authorized_app(ctx, app)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        ctx.pipeline.stop(ctx, app)
    click.echo(f"-----> Stopped {app}")


@ps.command("scale")
@click.argument("app")
@click.argument("pairs", nargs=-1)
@click.pass_obj
def scale(ctx: Context, app: str, pairs: tuple[str, ...]) -> None:
    """Set process counts (`web=2 worker=1`) as a new release; no pairs shows the formation."""
    authorized_app(ctx, app)
    current = ctx.state.current_release(app)
    formation = dict(current.formation if current else (ctx.state.get_formation(app) or {}))
    if not pairs:
        for k, v in formation.items():
            click.echo(f"{k}={v}")
        return
    changes = parse_scale(pairs)
    if (refusal := ctx.pipeline.scale_refusal(ctx, app)) is not None:
        raise UsageError(refusal)
    if "release" in changes:
        raise UsageError("release is the release phase (it runs once per deploy), not a process to scale")
    if current is not None:
        unknown = sorted(set(changes) - set(current.processes))
        if unknown:
            raise UsageError(f"unknown process type {unknown[0]!r} (known: {', '.join(sorted(formation))})")
        if all(formation.get(k, 0) == v for k, v in changes.items()):
            click.echo("-----> Already " + " ".join(f"{k}={v}" for k, v in changes.items()) + ": nothing to do")
            return
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        why = "ps:scale " + " ".join(f"{k}={v}" for k, v in changes.items())
        ctx.pipeline.new_release(ctx, app, why=why, formation=formation | changes, progress=echo_progress())
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=why)


@ps.command("set")
@click.argument("app")
@click.argument("key")
@click.argument("value", required=False)
@click.pass_obj
def set_(ctx: Context, app: str, key: str, value: str | None) -> None:
    """Set `restart-policy` (no, always, unless-stopped, on-failure[:N]); no VALUE restores the default."""
    authorized_app(ctx, app)
    if key != "restart-policy":
        raise UsageError(f"unknown ps setting {key[:40]!r} (known: restart-policy)")
    if value:
        ctx.state.set("ps", app, "restart-policy", parse_restart_policy(value))
    else:
        ctx.state.delete("ps", app, "restart-policy")
    click.echo(f"-----> {app} restart-policy: {ctx.state.get('ps', app, 'restart-policy') or DEFAULT_POLICY}"
               " (applies to containers started from now on)")
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary="ps:set restart-policy")


def parse_restart_policy(value: str) -> str:
    m = RESTART_POLICY.match(value)
    if not m or (m.group(1) is not None and not 1 <= int(m.group(1)) <= 1000):
        raise UsageError(f"restart-policy must be no, always, unless-stopped or on-failure[:N] (got {value[:30]!r})")
    return value


def parse_scale(pairs: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for pair in pairs:
        m = SCALE_ARG.match(pair)
        if not m:
            raise UsageError(f"expected TYPE=COUNT with COUNT from 0 to {MAX_SCALE}, got {pair[:40]!r}")
        count = int(m.group(2))
        if count > MAX_SCALE:
            raise UsageError(f"{m.group(1)}={count} is above the limit of {MAX_SCALE}")
        out[m.group(1)] = count
    return out


@ps.command("inspect")
@click.argument("app")
@click.pass_obj
def inspect(ctx: Context, app: str) -> None:
    """Print `docker inspect` of the app's containers as JSON, config values masked (see `config:show`)."""
    authorized_app(ctx, app)
    scheduler = ctx.scheduler(app)
    inspect = getattr(scheduler, "inspect", None)  # a capability of docker-local's, not of every Scheduler
    if inspect is None:
        raise UsageError(f"the {scheduler.name} scheduler has no containers to inspect here")
    click.echo(json.dumps(mask_env(inspect(ctx, app), set(ctx.state.get_env(app))), indent=2))


def mask_env(containers: list[dict[str, Any]], secret_keys: set[str]) -> list[dict[str, Any]]:
    """Every container's Config.Env with the values of the app's config keys as `***`."""
    for c in containers:
        config = c.get("Config") or {}
        config["Env"] = [f"{k}=***" if k in secret_keys else f"{k}={v}"
                         for k, _, v in (e.partition("=") for e in config.get("Env") or [])]
    return containers


@ps.command("rebuild")
@click.argument("app")
@click.pass_obj
def rebuild(ctx: Context, app: str) -> None:
    """Build the deployed commit again and deploy it as a new release."""
    authorized_app(ctx, app)
    current = ctx.state.current_release(app)
    if current is None or not current.sha:
        raise NotFound(f"{app} has no deployed commit to rebuild")
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        branch = ctx.state.get("git", app, "deploy-branch") or "main"
        ctx.pipeline.deploy_push(ctx, app, current.sha, echo_progress(), branch=branch)


def register(cli: click.Group) -> None:
    cli.add_command(ps)

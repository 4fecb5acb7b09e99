"""resource:limit|limit-clear|report — memory and CPU limits of an app's processes and of its builds.

The model is pushdock/resources.py. Setting or clearing limits is admin-only (limits protect the host from
the apps); a change restarts the running app with zero downtime, so the new limits hold at once, and is
recorded in refs/meta/config (`[resources.KEY]` of pushdock.toml). If the restart fails (say, too little
memory for the app to start), the old limits are put back and the old containers keep serving.
"""

from __future__ import annotations

import os

import click

from pushdock import resources
from pushdock.apps import authorized_app
from pushdock.commands import echo_progress, format_option, group, print_report
from pushdock.context import Context
from pushdock.errors import DeployFailed, UsageError
from pushdock.resources import BUILD, DEFAULT, Limits


@group("resource", "Memory and CPU limits of an app's processes and builds.", default_verb="report")
def resource() -> None:
    pass


def _key(process: str | None, build: bool) -> str:
    if build and process:
        raise UsageError("--build and --process exclude each other")
    if build:
        return BUILD
    return resources.check_key(process) if process else DEFAULT


def _known_process(ctx: Context, app: str, key: str) -> None:
    current = ctx.state.current_release(app)
    if key in (DEFAULT, BUILD) or current is None or key in current.processes:
        return
    raise UsageError(f"{app} has no {key} process type (known: {', '.join(sorted(current.processes))})")


def _fits_host(ctx: Context, app: str, limits: Limits) -> None:
    cpus = os.cpu_count() or 1
    if limits.cpu is not None and ctx.scheduler(app).name == "docker-local" and limits.cpu > cpus:
        raise UsageError(f"cpu {limits.cpu:g} is more than this host's {cpus} CPUs")


def _apply(ctx: Context, app: str, limits: dict[str, Limits], *, key: str, restart: bool) -> None:
    """Store `limits`, then restart the running app unless told not to; all or nothing."""
    old = resources.stored(ctx.state, app)
    resources.store(ctx.state, app, limits)
    if not restart or key == BUILD:  # a build's cap changes nothing that runs
        click.echo("-----> Stored; " + ("applies to the next build" if key == BUILD else
                                         "applies from the next deploy or restart"))
        return
    try:
        restarted = _restart(ctx, app, None if key in (DEFAULT, "all") else key)
    except DeployFailed as e:
        resources.store(ctx.state, app, old)
        raise DeployFailed(f"the new limits were not applied (the old ones stay): {e}") from e
    except BaseException:
        resources.store(ctx.state, app, old)
        raise
    if not restarted:
        click.echo("-----> Stored; applies when " + ("the app starts" if key in (DEFAULT, "all") else
                                                     f"{key} runs"))


def _restart(ctx: Context, app: str, process: str | None) -> bool:
    """Every process type for the default limits, else only the one whose limits changed."""
    from hooks import pipeline  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    return pipeline.restart_running(ctx, app, echo_progress(), process=process)


def _changed(ctx: Context, app: str, summary: str) -> None:
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=summary)


@resource.command("limit")
@click.argument("app")
@click.option("--process", "-p", "process", metavar="TYPE", help="A process type (default: every process type).")
@click.option("--build", is_flag=True, help="The app's builds instead of its processes.")
@click.option("--memory", metavar="SIZE", help="Hard memory limit, e.g. 256m or 1g (no swap beyond it).")
@click.option("--cpu", metavar="CPUS", help="CPU time, in CPUs, e.g. 0.5 or 2.")
@click.option("--no-restart", is_flag=True, help="Store only: apply from the next deploy or restart.")
@click.pass_obj
def limit(ctx: Context, *, app: str, process: str | None, build: bool, memory: str | None, cpu: str | None,
          no_restart: bool) -> None:
    """Limit the memory and/or CPU of the app's processes (or of one type, or of its builds); admin only."""
    authorized_app(ctx, app, admin=True)
    key = _key(process, build)
    if memory is None and cpu is None:
        raise UsageError(f"give --memory and/or --cpu (`resource:report {app}` shows the limits)")
    given = Limits(resources.parse_memory(memory) if memory is not None else None,
                   resources.parse_cpu(cpu) if cpu is not None else None)
    if key == BUILD and given.cpu is not None:
        raise UsageError("builds take a memory cap only (the engine's build API has no CPU quota)")
    _known_process(ctx, app, key)
    _fits_host(ctx, app, given)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        limits = resources.stored(ctx.state, app)
        limits[key] = given.over(limits.get(key, Limits()))
        click.echo(f"-----> {app} {key}: {limits[key].describe()}")
        _apply(ctx, app, limits, key=key, restart=not no_restart)
    _changed(ctx, app, f"resource:limit {key} {limits[key].describe()}")


@resource.command("limit-clear")
@click.argument("app")
@click.option("--process", "-p", "process", metavar="TYPE", help="A process type (default: the app's default).")
@click.option("--build", is_flag=True, help="The app's builds (back to PUSHDOCK_BUILD_MEMORY).")
@click.option("--all", "everything", is_flag=True, help="Every limit of the app.")
@click.option("--no-restart", is_flag=True, help="Store only: apply from the next deploy or restart.")
@click.pass_obj
def limit_clear(ctx: Context, *, app: str, process: str | None, build: bool, everything: bool,
                no_restart: bool) -> None:
    """Remove limits: the default ones, one process type's, the build's, or --all; admin only."""
    authorized_app(ctx, app, admin=True)
    if everything and (process or build):
        raise UsageError("--all excludes --process and --build")
    key = "all" if everything else _key(process, build)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        limits = resources.stored(ctx.state, app)
        kept = {} if everything else {k: v for k, v in limits.items() if k != key}
        if kept == limits:
            click.echo(f"-----> {app} has no {'' if everything else key + ' '}limits to clear")
            return
        click.echo(f"-----> {app} {key}: limits cleared")
        runtime_changed = {k: v for k, v in kept.items() if k != BUILD} != \
            {k: v for k, v in limits.items() if k != BUILD}
        _apply(ctx, app, kept, key=key if runtime_changed else BUILD, restart=not no_restart)
    _changed(ctx, app, f"resource:limit-clear {key}")


@resource.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's limits: stored ones, and what each process type and the build run with."""
    authorized_app(ctx, app)
    stored = resources.stored(ctx.state, app)
    current = ctx.state.current_release(app)
    processes = sorted(current.processes) if current else []
    effective = {p: resources.for_process(ctx.state, app, p) for p in processes}
    build = resources.for_build(ctx, app)
    if fmt == "json":
        print_report(f"{app} resources", {
            "limits": {k: v.to_dict() for k, v in sorted(stored.items())},
            "effective": {p: v.to_dict() for p, v in effective.items()},
            "build": build.to_dict(),
        }, fmt)
        return
    fields = {f"{k} limit": v.describe() for k, v in sorted(stored.items()) if k != BUILD}
    fields |= {f"{p} runs with": v.describe() for p, v in effective.items()}
    fields["build memory cap"] = (resources.format_memory(build.memory) if build.memory is not None else "none") + (
        " (resource:limit --build)" if BUILD in stored else " (PUSHDOCK_BUILD_MEMORY or half the host)")
    if not stored:
        fields = {"limits": "none (processes are unlimited)", **fields}
    print_report(f"{app} resources", fields, fmt)


COMMANDS = [resource]

"""config:set|unset|get|show|export — the app's environment; changes redeploy with zero downtime."""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex

import click

from pushdock.apps import authorize
from pushdock.commands import echo_progress, group
from pushdock.context import Context
from pushdock.errors import NotFound, UsageError
from pushdock.state import validate_env_key

PLAIN = re.compile(r"[A-Za-z0-9_./:@%+,-]+")  # written bare in `--format env`; anything else is quoted


@group("config", "Manage an app's environment.", default_verb="show")
def config() -> None:
    pass


def parse_assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE arguments -> dict; UsageError naming the first bad one (nothing is applied)."""
    if not pairs:
        raise UsageError("nothing to set: give KEY=VALUE pairs")
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"expected KEY=VALUE, got {key[:40]!r}")
        out[validate_env_key(key)] = value
    return out


def decode_values(env: dict[str, str]) -> dict[str, str]:
    """`config:set --encoded`: every value is base64 of UTF-8 text; UsageError naming the first bad one."""
    out = {}
    for key, value in env.items():
        try:
            text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise UsageError(f"the value of {key} is not base64 of UTF-8 text (--encoded)") from None
        if "\0" in text:
            raise UsageError(f"the value of {key} holds a NUL byte: an environment value cannot")
        out[key] = text
    return out


def _apply(ctx: Context, app: str, env: dict[str, str], why: str, no_restart: bool) -> None:
    if no_restart:
        ctx.state.set_env(app, env)
        click.echo("-----> Stored; takes effect on the next deploy or restart")
        return
    release = ctx.pipeline.new_release(ctx, app, why=why, env=env, progress=echo_progress())
    if release is None:
        click.echo("-----> Stored; the app is not deployed yet")


@config.command("set")
@click.option("--no-restart", is_flag=True, help="Store only; apply at the next deploy.")
@click.option("--encoded", is_flag=True, help="Values are base64 (for multi-line values: keys, certificates).")
@click.argument("app")
@click.argument("pairs", nargs=-1, required=True)
@click.pass_obj
def set_(ctx: Context, app: str, pairs: tuple[str, ...], no_restart: bool, encoded: bool) -> None:
    """Set KEY=VALUE pairs and redeploy."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    changes = parse_assignments(pairs)
    if encoded:
        changes = decode_values(changes)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        env = ctx.state.get_env(app) | changes
        click.echo(f"-----> Setting config vars: {', '.join(sorted(changes))}")
        _apply(ctx, app, env, f"config:set {' '.join(sorted(changes))}", no_restart)
    ctx.bus.call("post_config_update", ctx=ctx, app=app, action="set", keys=sorted(changes))
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"config:set {' '.join(sorted(changes))}")


@config.command("unset")
@click.option("--no-restart", is_flag=True, help="Store only; apply at the next deploy.")
@click.argument("app")
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
def unset(ctx: Context, app: str, keys: tuple[str, ...], no_restart: bool) -> None:
    """Remove keys and redeploy."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    for k in keys:
        validate_env_key(k)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        env = ctx.state.get_env(app)
        missing = [k for k in keys if k not in env]
        if missing:
            raise NotFound(f"{app} has no config key {missing[0]}")
        for k in keys:
            del env[k]
        click.echo(f"-----> Unsetting {', '.join(keys)}")
        _apply(ctx, app, env, f"config:unset {' '.join(keys)}", no_restart)
    ctx.bus.call("post_config_update", ctx=ctx, app=app, action="unset", keys=list(keys))
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"config:unset {' '.join(keys)}")


@config.command("get")
@click.option("--encoded", is_flag=True, help="Print the value as base64 (one line, byte-exact).")
@click.argument("app")
@click.argument("key")
@click.pass_obj
def get(ctx: Context, app: str, key: str, encoded: bool) -> None:
    """Print one value."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    env = ctx.state.get_env(app)
    if validate_env_key(key) not in env:
        raise NotFound(f"{app} has no config key {key}")
    click.echo(base64.b64encode(env[key].encode()).decode() if encoded else env[key])


@config.command("show")
@click.argument("app")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def show(ctx: Context, app: str, fmt: str) -> None:
    """Show every key and value."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    env = ctx.state.get_env(app)
    if fmt == "json":
        click.echo(json.dumps(env, indent=1, sort_keys=True))
        return
    click.echo(f"=====> {app} env vars")
    width = max((len(k) for k in env), default=0) + 1
    for k in sorted(env):
        click.echo(f"{(k + ':').ljust(width)}  {env[k]}")


@config.command("keys")
@click.argument("app")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def keys(ctx: Context, app: str, fmt: str) -> None:
    """List the keys of the environment, never the values."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    names = sorted(ctx.state.get_env(app))
    click.echo(json.dumps(names) if fmt == "json" else "\n".join(names))


@config.command("export")
@click.argument("app")
@click.option("--format", "fmt", type=click.Choice(["env", "json", "shell"]), default="shell")
@click.pass_obj
def export(ctx: Context, app: str, fmt: str) -> None:
    """Print the environment as dotenv, JSON or `export` lines."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    env = ctx.state.get_env(app)
    if fmt == "json":
        click.echo(json.dumps(env, indent=1, sort_keys=True))
    elif fmt == "env":
        for k in sorted(env):
            click.echo(f"{k}={json.dumps(env[k]) if _needs_quotes(env[k]) else env[k]}")
    else:
        for k in sorted(env):
            click.echo(f"export {k}={shlex.quote(env[k])}")


def _needs_quotes(value: str) -> bool:
    return not PLAIN.fullmatch(value)  # whitespace, line breaks, quotes, `#`, `$`...: JSON escapes keep it whole


def register(cli: click.Group) -> None:
    cli.add_command(config)

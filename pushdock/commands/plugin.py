"""plugin:install|list|enable|disable|uninstall|update|trigger — plugins of the host (admin only).

The model is pushdock/plugins.py (what is there, what loads) and pushdock/plugin_install.py (changes).
"""

from __future__ import annotations

import click

from pushdock import plugin_install as service
from pushdock.apps import require_admin
from pushdock.commands import format_option, group, print_table
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.plugins import scan


@group("plugin", "Install, list, enable, disable and run plugins (admin only).", default_verb="list")
def plugin() -> None:
    pass


def _say(verb: str, p: object) -> None:
    from pushdock.plugins import Plugin  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    assert isinstance(p, Plugin)
    what = f"{p.kind} plugin {p.name}" + (f" {p.version}" if p.version else "")
    click.echo(f"-----> {verb} {what}")
    if p.triggers:
        click.echo(f"       {'entry points' if p.kind == 'python' else 'triggers'}: {' '.join(p.triggers)}")


@plugin.command("install")
@click.argument("source")
@click.option("--name", default=None, help="The plugin's name (default: from the source).")
@click.pass_obj
def install(ctx: Context, source: str, name: str | None) -> None:
    """Install a plugin: git URL, path or Python package.

    SOURCE is a git URL (https://, ssh://, git@host:path, file://) or an absolute path holding trigger
    scripts and an optional plugin.toml, or the name of a Python package on the host's
    PUSHDOCK_PLUGIN_ALLOW list. It runs from the next command or deploy on.
    """
    require_admin(ctx)
    _say("Installed", service.install(ctx, source, name))


@plugin.command("list")
@format_option
@click.pass_obj
def list_(ctx: Context, fmt: str) -> None:
    """List the plugins, and why one does not load.

    Each plugin's kind (script or python), version, whether it is enabled, and its load error if any.
    """
    require_admin(ctx)
    plugins = scan(service.plugins_dir(ctx), ctx.bus.load_errors)
    if fmt == "json":
        print_table([p.as_json() for p in plugins], [], fmt)
        return
    rows = [{"name": p.name, "kind": p.kind, "version": p.version or "-",
             "enabled": "enabled" if p.enabled else "disabled",
             "status": "loaded" if p.error is None else f"error: {p.error}",
             "description": p.description} for p in plugins]
    print_table(rows, ["name", "kind", "version", "enabled", "status", "description"], fmt)


@plugin.command("enable")
@click.argument("name")
@click.pass_obj
def enable(ctx: Context, name: str) -> None:
    """Enable a plugin: its triggers run again."""
    require_admin(ctx)
    p = service.set_enabled(ctx, name, True)
    click.echo(f"-----> Enabled plugin {name}" + (f" (it does not load: {p.error})" if p.error else ""))


@plugin.command("disable")
@click.argument("name")
@click.pass_obj
def disable(ctx: Context, name: str) -> None:
    """Disable a plugin: none of its triggers runs."""
    require_admin(ctx)
    service.set_enabled(ctx, name, False)
    click.echo(f"-----> Disabled plugin {name}")


@plugin.command("uninstall")
@click.argument("name")
@click.pass_obj
def uninstall(ctx: Context, name: str) -> None:
    """Remove a plugin.

    A Python plugin's package leaves pushdock's environment (its own dependencies stay).
    """
    require_admin(ctx)
    p = service.uninstall(ctx, name)
    click.echo(f"-----> Uninstalled {p.kind} plugin {name}")


@plugin.command("update")
@click.argument("name")
@click.pass_obj
def update(ctx: Context, name: str) -> None:
    """Fetch a plugin again from its source.

    A Python plugin's package is reinstalled. If the new one does not load, the old one stays.
    """
    require_admin(ctx)
    _say("Updated", service.update(ctx, name))


@plugin.command("trigger", context_settings={"ignore_unknown_options": True})
@click.argument("trigger")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def trigger(ctx: Context, trigger: str, args: tuple[str, ...]) -> None:
    """Fire a trigger by hand; print the answers.

    TRIGGER and its arguments as in docs/triggers.md. Every enabled plugin that implements it runs, the
    built-ins too: `plugin:trigger post-deploy APP 3 IMAGE`.
    """
    require_admin(ctx)
    from pushdock import specs  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    name = trigger.replace("-", "_")
    spec = getattr(specs, name, None)
    if spec is None or not hasattr(spec, "pushdock_spec") or name in specs.PYTHON_ONLY:
        raise UsageError(f"unknown trigger {trigger[:40]!r}", hint="docs/triggers.md lists them")
    params = [p for p in spec.__code__.co_varnames[: spec.__code__.co_argcount] if p != "ctx"]
    if len(args) != len(params):
        raise UsageError(f"{trigger} takes {len(params)} arguments ({' '.join(params) or 'none'}), "
                         f"got {len(args)}")
    hints = spec.__annotations__
    kwargs: dict[str, object] = {}
    for p, value in zip(params, args, strict=True):
        kind = str(hints.get(p, "str"))
        if kind == "int":
            try:
                kwargs[p] = int(value)
            except ValueError:
                raise UsageError(f"{p} must be a number, got {value[:20]!r}") from None
        elif kind.startswith("list"):
            kwargs[p] = [v for v in value.split(",") if v]
        else:
            kwargs[p] = value
    if spec.pushdock_spec.get("firstresult"):
        out = ctx.bus.first(name, ctx=ctx, **kwargs)
        results = [] if out in (None, "") else [out]
    else:
        results = ctx.bus.call(name, ctx=ctx, **kwargs)
    for r in results:
        if r not in (None, ""):
            click.echo(str(r))


def register(cli: click.Group) -> None:
    cli.add_command(plugin)

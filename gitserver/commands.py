"""Commands of the git server: `serve`, `ssh-keys:add|list|remove`, `tokens:add|list|remove`."""

from __future__ import annotations

import sys

import click

from pushdock.commands import format_option, group, print_table
from pushdock.context import Context
from pushdock.errors import Forbidden


@click.command("serve")
@click.pass_obj
def serve_cmd(ctx: Context) -> None:
    """Run the SSH and HTTP servers in the foreground (stop with SIGTERM or Ctrl-C)."""
    if ctx.identity.door != "cli":
        raise Forbidden("serve runs on the host only")
    from gitserver.serve import serve  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    serve(ctx, on_ready=click.echo)


@group("ssh-keys", "Manage the SSH keys that may push and run commands.", default_verb="list")
def ssh_keys() -> None:
    pass


@ssh_keys.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "deployer"]), default="admin", show_default=True,
              help="admin: every app and command; deployer: push and run commands for --apps only.")
@click.option("--apps", default="", help="Comma-separated apps a deployer may use.")
@click.pass_obj
def add(ctx: Context, name: str, role: str, apps: str) -> None:
    """Add the public key read from stdin as NAME."""
    from gitserver import keys  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    text = sys.stdin.read()
    allowed = tuple(a.strip() for a in apps.split(",") if a.strip())
    record = keys.add_key(ctx, name, text, role=role, apps=allowed)
    click.echo(f"-----> Added key {record.name} ({record.role}, {record.fingerprint})")


@ssh_keys.command("list")
@format_option
@click.pass_obj
def list_(ctx: Context, fmt: str) -> None:
    """List the keys: name, role, apps, fingerprint."""
    from gitserver import keys  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    rows = [{"name": k.name, "role": k.role, "apps": list(k.apps) if fmt == "json" else ",".join(k.apps),
             "fingerprint": k.fingerprint} for k in keys.list_keys(ctx)]
    print_table(rows, ["name", "role", "apps", "fingerprint"], fmt)


@ssh_keys.command("remove")
@click.argument("name")
@click.pass_obj
def remove(ctx: Context, name: str) -> None:
    """Remove the key called NAME."""
    from gitserver import keys  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    keys.remove_key(ctx, name)
    click.echo(f"-----> Removed key {name}")


@group("tokens", "Manage the tokens that may use git over HTTP (/git/APP.git).", default_verb="list")
def tokens() -> None:
    pass


@tokens.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "deployer"]), default="admin", show_default=True,
              help="admin: every app; deployer: only the --apps (git over HTTP, the API, the dashboard).")
@click.option("--apps", default="", help="Comma-separated apps a deployer may use.")
@click.pass_obj
def add_token(ctx: Context, name: str, role: str, apps: str) -> None:
    """Make a token called NAME and print it (once: only its hash is kept)."""
    from pushdock import tokens as service  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    allowed = tuple(a.strip() for a in apps.split(",") if a.strip())
    record, secret = service.add_token(ctx, name, role=role, apps=allowed)
    click.echo(f"-----> Added token {record.name} ({record.role}); it is shown only now:")
    click.echo(secret)


@tokens.command("list")
@format_option
@click.pass_obj
def list_tokens(ctx: Context, fmt: str) -> None:
    """List the tokens: name, role, apps (never the tokens themselves)."""
    import time  # noqa: PLC0415 -- start-up: time loads when first used

    from pushdock import tokens as service  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    rows = [{"name": t.name, "role": t.role, "apps": list(t.apps) if fmt == "json" else ",".join(t.apps),
             "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created))}
            for t in service.list_tokens(ctx)]
    print_table(rows, ["name", "role", "apps", "created"], fmt)


@tokens.command("remove")
@click.argument("name")
@click.pass_obj
def remove_token(ctx: Context, name: str) -> None:
    """Remove the token called NAME."""
    from pushdock import tokens as service  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    service.remove_token(ctx, name)
    click.echo(f"-----> Removed token {name}")

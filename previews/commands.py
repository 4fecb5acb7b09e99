"""`previews:*`: enable previews of an app's pull requests, their settings, the list, and approving a fork's head."""

from __future__ import annotations

import dataclasses
import time

import click

from previews import deploy, model
from pushdock.apps import authorized_app
from pushdock.commands import format_option, group, print_table
from pushdock.context import Context
from pushdock.errors import NotFound, UsageError


@group("previews", "Preview apps per pull request: APP-pr-N at APP-pr-N.DOMAIN.", default_verb="list")
def previews() -> None:
    pass


@previews.command("enable")
@click.argument("app")
@click.pass_obj
def enable(ctx: Context, app: str) -> None:
    """Deploy a preview of each pull request GitHub tells the app's webhook about."""
    authorized_app(ctx, app)
    model.preview_app(app, 1)  # APP-pr-N must be an app name: refuse names too long for it now
    model.set_enabled(ctx, app, True)
    click.echo(f"-----> Previews of {app} enabled (pull_request events on the webhook deploy {app}-pr-N)")


@previews.command("disable")
@click.argument("app")
@click.pass_obj
def disable(ctx: Context, app: str) -> None:
    """No new previews; open ones stay until their pull request closes or their ttl ends."""
    authorized_app(ctx, app)
    model.set_enabled(ctx, app, False)
    click.echo(f"-----> Previews of {app} disabled")


@previews.command("set")
@click.argument("app")
@click.argument("key", type=click.Choice(model.SETTINGS))
@click.argument("value")
@click.pass_obj
def set_(ctx: Context, app: str, key: str, value: str) -> None:
    """ttl (7d, 12h...), max, env KEY=VALUE (KEY= removes it), copy-secrets K1,K2, database empty|clone."""
    authorized_app(ctx, app)
    shown = model.set_setting(ctx, app, key, value)
    click.echo(f"-----> Previews of {app}: {key} {shown}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@previews.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def list_(ctx: Context, app: str, fmt: str) -> None:
    """The app's previews: PR, head, URL, state, age, expires."""
    authorized_app(ctx, app)
    conf, now = model.settings(ctx, app), time.time()
    rows = []
    for pr, p in sorted(model.records(ctx, app).items()):
        name = model.preview_app(app, pr)
        expires = (p.updated or p.opened) + conf.ttl
        rows.append({"pr": pr, "app": name, "head": p.head if fmt == "json" else p.head[:7], "fork": p.fork,
                     "url": deploy.url_of(ctx, name), "state": p.state, "deployed": p.deployed,
                     "age": round(now - p.opened) if fmt == "json" else _age(now - p.opened),
                     "expires": (round(expires) if fmt == "json"
                                 else time.strftime("%Y-%m-%d %H:%M", time.localtime(expires))),
                     "services": list(p.services)})
    print_table(rows, ["pr", "head", "url", "state", "age", "expires"], fmt)


@previews.command("approve")
@click.argument("app")
@click.argument("pr", type=int)
@click.pass_obj
def approve(ctx: Context, app: str, pr: int) -> None:
    """Deploy a fork's pull request at its current head (a new commit needs a new approval)."""
    authorized_app(ctx, app)
    with model.locked(ctx, app):
        preview = model.get(ctx, app, pr)
        if preview is None:
            raise NotFound(f"{app} has no preview of pull request #{pr}")
        if not preview.fork:
            raise UsageError(f"pull request #{pr} is not from a fork: it deploys without approval")
        if preview.runnable and preview.state != model.WAITING:
            raise UsageError(f"pull request #{pr} is approved at its head {preview.head[:7]} already")
        model.save(ctx, app, dataclasses.replace(preview, approved=preview.head, state=model.QUEUED))
    ctx.event("previews:approve", app=app, pr=pr, sha=preview.head)
    deploy.spawn(ctx, deploy.Job(app=app, pr=pr, action="deploy", who=ctx.identity.name, door=ctx.identity.door))
    click.echo(f"-----> Approved {preview.head[:7]} of pull request #{pr}: deploying {model.preview_app(app, pr)} "
               f"(previews:list {app})")

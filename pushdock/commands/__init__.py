"""Core command groups; each module exposes `register(cli)`. Commands are thin: parse, call a service, print."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from pushdock.progress import Progress

format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="Output format.",
)


def echo_progress() -> Progress:
    """Deploy output of a command goes to the caller's stdout, line by line."""
    return Progress(click.echo)


def print_table(rows: Sequence[dict[str, Any]], columns: Iterable[str], fmt: str) -> None:
    columns = list(columns)
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=1, default=str))
        return
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        click.echo("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def print_report(title: str, fields: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(fields, indent=1, default=str))
        return
    click.echo(f"=====> {title}")
    width = max(len(k) for k in fields) + 1
    for k, v in fields.items():
        click.echo(f"       {(k + ':').ljust(width)} {v}")


def group(name: str, help: str, default_verb: str | None = None) -> Callable[..., click.Group]:
    from pushdock.cli import Verbs  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    cls = type(f"{name.title()}Verbs", (Verbs,), {"default_verb": default_verb})

    def make(f: Callable[..., Any]) -> click.Group:
        return click.group(name=name, cls=cls, help=help)(f)

    return make

"""The command registry shared by the host CLI and the SSH door, and the edge that renders errors."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, TextIO

import click

from pushdock.errors import PushdockError, internal_error

CORE_COMMAND_MODULES = ("apps", "config", "ps", "logs", "events", "core", "releases", "run", "checks", "service",
                        "storage", "cron", "builds", "plugin", "logship")
# Which core module defines which top-level name, so a command loads only what it needs (start-up time).
CORE_NAMES = {"apps": "apps", "config": "config", "ps": "ps", "logs": "logs", "events": "events",
              "version": "core", "help": "core", "releases": "releases", "run": "run", "checks": "checks",
              "service": "service", "storage": "storage", "cron": "cron",
              "enter": "run", "builds": "builds", "logs:failed": "builds", "plugin": "plugin",
              "logs:set": "logship", "logs:report": "logship"}


class Registry(click.Group):
    """Resolves Dokku-style `plugin:verb` as well as `plugin verb`; bare `releases` runs its default.

    Commands load lazily: a core name imports only its module; anything else loads the plugins.
    """

    plugins: Any = None
    _loaded: set[str]

    def _load_core(self, module: str) -> None:
        if module not in self._loaded:
            self._loaded.add(module)
            importlib.import_module(f"pushdock.commands.{module}").register(self)

    def _load_all(self) -> None:
        for module in CORE_COMMAND_MODULES:
            self._load_core(module)
        if "plugins" not in self._loaded and self.plugins is not None:
            self._loaded.add("plugins")
            self.plugins().call("register_commands", cli=self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in CORE_NAMES:
            self._load_core(CORE_NAMES[cmd_name])
        if cmd_name not in self.commands:
            self._load_all()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_all()
        return super().list_commands(ctx)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        head = args[0] if args else ""
        if ":" in head and head not in CORE_NAMES:  # `logs:failed` (and :set, :report) are commands of their own
            group, _, verb = head.partition(":")
            args = [group, verb, *args[1:]]
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            if isinstance(cmd, click.Group):
                for sub in cmd.list_commands(ctx):
                    subcmd = cmd.get_command(ctx, sub)
                    if subcmd is not None:
                        rows.append((f"{name}:{sub}", subcmd.get_short_help_str(100)))
            else:
                rows.append((name, cmd.get_short_help_str(100)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class Verbs(click.Group):
    """A command group (`apps`) whose bare invocation runs its `default_verb` (e.g. `releases APP`)."""

    default_verb: str | None = None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.default_verb:
            args = [self.default_verb]
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if self.default_verb and (not args or args[0] not in self.commands):
            args = [self.default_verb, *args]
        return super().resolve_command(ctx, args)


def build_cli(plugins: Callable[[], Any]) -> Registry:
    """The click app: core command modules, then every plugin's `register_commands` (both on demand).

    `plugins` returns the Bus; it is called only when a plugin's command (or the full list) is needed.
    """

    @click.group(cls=Registry, context_settings={"help_option_names": ["-h", "--help"]})
    def cli() -> None:
        """pushdock: git push to deploy. Run `pushdock help` for the commands."""

    assert isinstance(cli, Registry)
    cli.plugins = plugins
    cli._loaded = set()
    return cli


def dispatch(argv: list[str], ctx: Any, out: TextIO, err: TextIO, errors: list[PushdockError] | None = None) -> int:
    """Run one command as the host CLI does; render errors as one `error:` line; return the exit status.

    `errors` (the HTTP door's) receives the PushdockError a command failed with, to choose a status code.

    A command that returns an int (`run`: the one-off container's status) has chosen its exit status:
    it is returned as is, with no `error:` line. Any other return value means 0.
    """
    import time  # noqa: PLC0415 -- start-up: time loads when first used

    started = time.time()
    app = _app_arg(argv)
    action = argv[0] if argv else "help"
    try:
        cli = build_cli(lambda: ctx.bus)
        with _redirect(out, err):
            status = cli.main(args=argv or ["help"], prog_name="pushdock", obj=ctx, standalone_mode=False)
        rc = status if isinstance(status, int) and not isinstance(status, bool) else 0
    except click.exceptions.Exit as e:
        rc = e.exit_code
    except click.exceptions.Abort:
        err.write("error: aborted\n")
        rc = 1
    except click.ClickException as e:
        err.write(f"error: {e.format_message()}\n")
        rc = e.exit_code
    except PushdockError as e:
        if errors is not None:
            errors.append(e)
        err.write(f"error: {e.message}\n")
        if e.hint:
            err.write(f"hint: {e.hint}\n")
        rc = e.exit_code
    except BrokenPipeError:
        rc = 1
    except Exception:
        err.write(f"error: {internal_error('command crashed', command=action)} (details in the server log)\n")
        rc = 70
    out.flush()
    if action not in ("help", "version"):  # every command is audited, reads too: `config:show` reveals secrets
        try:
            from pushdock.redact import redact_argv  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

            ctx.event(action, app=app, result="ok" if rc == 0 else f"exit {rc}", started=started,
                      command=" ".join(redact_argv(argv))[:300])
        except (OSError, PushdockError):  # the data dir unusable (or newer): its error is already shown
            pass
    return rc


def _app_arg(argv: list[str]) -> str | None:
    from pushdock.state import APP_NAME  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    positional = [a for a in argv[1:] if not a.startswith("-")]
    return positional[0] if positional and APP_NAME.match(positional[0]) else None


class _redirect:
    """Point click.echo's default streams at the door's streams for the duration of a command."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def __enter__(self) -> None:
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.out, self.err

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.saved


def main() -> None:
    """Entry point of the `pushdock` console script (the host door: root is admin)."""
    import getpass  # noqa: PLC0415 -- start-up: getpass loads when first used

    from pushdock.context import Context, load_settings  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)
    from pushdock.log import configure  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)
    from pushdock.state import Identity  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    settings = load_settings()
    serving = sys.argv[1:2] == ["serve"]
    who = getpass.getuser()
    ctx = Context(settings=settings, identity=Identity(name=who, role="admin", door="cli"))
    if sys.argv[1:2] not in (["help"], ["version"], ["--help"], ["-h"], []):
        try:  # open the data dir before the log file is made in it: a newer schema is refused untouched
            ctx.state  # noqa: B018
        except PushdockError as e:
            sys.stderr.write(f"error: {e.message}\n")
            sys.exit(e.exit_code)
    logfile = settings.data_dir / "logs" / "pushdock.log"
    try:
        logfile.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        logfile = None  # type: ignore[assignment]
    configure(settings.log_level, logfile, stderr=serving)
    sys.exit(dispatch(sys.argv[1:], ctx, sys.stdout, sys.stderr))


if __name__ == "__main__":
    main()

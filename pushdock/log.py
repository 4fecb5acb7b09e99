"""loguru, configured once per process; stdlib logging (dulwich, asyncssh, docker) routed into it.

Importing loguru costs ~35 ms (it pulls in asyncio and multiprocessing) that a short command such as
`apps:list` never needs. So `configure()` only records what to do, and it is done the moment loguru
(or stdlib `logging`) is first imported, by whichever module imports it: an import hook, so a module
that says `from loguru import logger` always gets a configured logger. `logger` below is a proxy that
imports loguru on first use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from loguru import Logger

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message} {extra}"


class _LazyLogger:
    """loguru's `logger`, imported on first attribute access (e.g. `logger.info(...)`)."""

    def __getattr__(self, name: str) -> Any:
        from loguru import logger  # noqa: PLC0415 -- start-up: loguru (log.py configures it as it loads) loads when first used

        return getattr(logger, name)


logger = cast("Logger", _LazyLogger())


def configure(level: str = "INFO", logfile: Path | None = None, *, stderr: bool = True,
              extra: dict[str, Any] | None = None) -> None:
    """Send logs to stderr (when asked) and to a rotating file; never to stdout (it can be a git stream).

    `extra` is bound to every record of the process. Takes effect now if loguru is loaded, else when it is.
    """
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(logfile, "a"):  # fail here, not at the first log line, if the file is not writable
            pass
    _after_import("loguru", lambda: _configure_loguru(level, logfile, stderr, extra or {}))
    _after_import("logging", _intercept_stdlib)


def _configure_loguru(level: str, logfile: Path | None, stderr: bool, extra: dict[str, Any]) -> None:
    from loguru import logger  # noqa: PLC0415 -- start-up: loguru (log.py configures it as it loads) loads when first used

    logger.remove()
    logger.configure(extra=extra)
    if stderr:
        logger.add(sys.stderr, level=level, format=FORMAT, diagnose=False, backtrace=False)
    if logfile is not None:
        logger.add(logfile, level="DEBUG", format=FORMAT, rotation="10 MB", retention=3, diagnose=False)


def _intercept_stdlib() -> None:
    import logging  # noqa: PLC0415 -- start-up: logging loads when first used

    class Intercept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                level: str | int = logger.level(record.levelname).name
            except ValueError:
                level = record.levelno
            logger.opt(depth=6, exception=record.exc_info).log(level, "{}", record.getMessage())

    logging.basicConfig(handlers=[Intercept()], level=logging.WARNING, force=True)


# -- run a function once a module has been imported -------------------------------------------------
_pending: dict[str, Callable[[], None]] = {}


def _after_import(module: str, action: Callable[[], None]) -> None:
    """Run `action` now if `module` is loaded, else right after its first import (a later call replaces it)."""
    if module in sys.modules:
        _pending.pop(module, None)
        action()
        return
    _pending[module] = action
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


class _AfterImport:
    """A meta-path finder: the real finders find a pending module; its action runs once it is executed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _pending:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRun(spec.loader, name, self)
        return spec


class _ThenRun:
    """Wraps a module's loader for one import: execute the module, put the real loader back, run the action."""

    def __init__(self, loader: Any, name: str, finder: _AfterImport) -> None:
        self.loader, self.name, self.finder = loader, name, finder

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        action = _pending.pop(self.name, None)
        if not _pending and self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        if action is not None:
            action()

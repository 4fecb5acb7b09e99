"""loguru, configured once per process; stdlib logging (dulwich, asyncssh, docker) routed into it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from loguru import logger


class _Intercept(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, "{}", record.getMessage())


def configure(level: str = "INFO", logfile: Path | None = None, *, stderr: bool = True) -> None:
    """Send logs to stderr (when asked) and to a rotating file; never to stdout (it can be a git stream)."""
    logger.remove()
    fmt = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message} {extra}"
    if stderr:
        logger.add(sys.stderr, level=level, format=fmt, diagnose=False, backtrace=False)
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        logger.add(logfile, level="DEBUG", format=fmt, rotation="10 MB", retention=3, diagnose=False)
    logging.basicConfig(handlers=[_Intercept()], level=logging.WARNING, force=True)

"""The one family of errors users see; translated to text only at the edges (CLI, SSH, git, HTTP)."""

from __future__ import annotations


class PushdockError(Exception):
    """An error whose message is meant for the user: one line, no secrets."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # always one line
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PushdockError):
    """Bad input: a malformed argument, name or value."""

    exit_code = 2


class NotFound(PushdockError):
    """An app, key, release or process that does not exist."""


class Conflict(PushdockError):
    """Name taken, lock held, stale ref."""


class Forbidden(PushdockError):
    """The caller's role does not allow this."""

    exit_code = 13


class BuildFailed(PushdockError):
    """The build step failed."""


class BuildCancelled(BuildFailed):
    """`builds:cancel` stopped the build."""


class DeployFailed(PushdockError):
    """Containers did not start or did not pass their checks."""


class TaskFailed(DeployFailed):
    """A one-off task (release phase, predeploy, a cron job) exited non-zero: `status` is its exit status."""

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class HookFailed(PushdockError):
    """A trigger (Python plugin or script) failed."""


def internal_error(what: str, **context: object) -> str:
    """For an unexpected exception being handled at an edge: log it with its traceback under a new id, and
    return what the user is told instead, `internal error <id>` (the one place that text is made)."""
    import uuid  # noqa: PLC0415 -- start-up: only a crash needs it

    from loguru import logger  # noqa: PLC0415 -- start-up: loguru (log.py configures it as it loads) loads when first used

    error_id = uuid.uuid4().hex[:8]
    logger.exception(what, error_id=error_id, **context)
    return f"internal error {error_id}"

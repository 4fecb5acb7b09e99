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

"""What the core asks of the deploy chain: the entry points its commands use.

The chain itself is hooks/pipeline.py, handed to the core by the built-in `pipeline` plugin through the
`pipeline` trigger (Context.pipeline): the core never imports the layer above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release


class Pipeline(Protocol):
    def deploy_push(self, ctx: Context, app: str, sha: str, progress: Progress, *, branch: str) -> Release:
        """Build commit `sha` of `app` and deploy it as a new release with zero downtime."""
        ...

    def new_release(self, ctx: Context, app: str, *, why: str, env: dict[str, str] | None = ...,
                    formation: dict[str, int] | None = ..., mounts: list[str] | None = ...,
                    progress: Progress = ...) -> Release | None:
        """A config, scale or storage change as release vN+1; None when the app was never deployed."""
        ...

    def rollback(self, ctx: Context, app: str, number: int | None, progress: Progress = ...) -> Release:
        """vN's image, env and formation (default: the previous successful release) as a new release."""
        ...

    def restart(self, ctx: Context, app: str, progress: Progress = ..., *,
                process: str | None = ...) -> Release | None:
        """Fresh containers of the current release (or of one process type); None if never deployed."""
        ...

    def restart_running(self, ctx: Context, app: str, progress: Progress = ..., *, process: str | None = ...) -> bool:
        """Restart the app (or one process type) if it runs; whether it did."""
        ...

    def stop(self, ctx: Context, app: str) -> None:
        """Stop every process of the app."""
        ...

    def scale_refusal(self, ctx: Context, app: str) -> str | None:
        """Why `ps:scale` is refused now, or None."""
        ...

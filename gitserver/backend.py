"""Map the path a git client sends (`/app`, `app.git`, ...) to the app's bare repository."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo
from dulwich.server import Backend

from pushdock.errors import PushdockError
from pushdock.state import APP_NAME, validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context


def app_from_path(path: str | bytes) -> str:
    """The app named by a repository path: `/app`, `app`, `app.git`, `/app.git` (str or bytes).

    Raises UsageError for anything else; the name is validated before any filesystem use.
    """
    # dulwich.web passes str for GET and bytes for POST; ssh and git:// send a leading '/'.
    name = os.fsdecode(path)
    name = name.removeprefix("/").removesuffix("/").removesuffix(".git")
    if not APP_NAME.fullmatch(name):  # APP_NAME's `$` also matches before a final newline
        validate_app_name(name.replace("\n", "\\n"))  # raises UsageError with the usual message
    return validate_app_name(name)


class AppBackend(Backend):
    """A dulwich backend over the data dir's app repositories; carries the Context for the handlers."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def open_repository(self, path: str | bytes) -> Repo:
        try:
            app = app_from_path(path)
        except PushdockError as e:
            raise NotGitRepository(str(e)) from None
        repo_path = self.ctx.state.repo_path(app)
        if not repo_path.is_dir():
            raise NotGitRepository(f"app {app} does not exist")
        return Repo(str(repo_path))

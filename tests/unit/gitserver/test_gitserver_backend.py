"""AppBackend: every path form a git client sends maps to the app's repo; anything else is refused."""

from __future__ import annotations

import pytest
from dulwich.errors import NotGitRepository

from gitserver.backend import AppBackend, app_from_path
from pushdock.context import Context
from pushdock.errors import UsageError


@pytest.mark.parametrize("path", ["/myapp", "myapp", "myapp.git", "/myapp.git", b"/myapp", b"myapp.git", "/myapp/"])
def test_path_forms_name_the_app(path: str | bytes) -> None:
    assert app_from_path(path) == "myapp"


@pytest.mark.parametrize(
    "path", ["", "/", "../x", "/../x", "A B", "MyApp", "a/b", "//myapp", "x" * 64, "-app", "app-", "app.git.git",
             "myapp\n", "/srv/apps/myapp", "~/myapp"],
)
def test_invalid_paths_are_refused(path: str) -> None:
    with pytest.raises(UsageError, match="invalid app name"):
        app_from_path(path)


def test_open_repository_maps_to_the_data_dir(ctx: Context) -> None:
    ctx.state.create_app("myapp")
    backend = AppBackend(ctx)
    for path in ("/myapp", b"/myapp.git"):
        repo = backend.open_repository(path)
        try:
            assert repo.path == str(ctx.state.repo_path("myapp"))
        finally:
            repo.close()


def test_unknown_app_is_not_a_repository(ctx: Context) -> None:
    with pytest.raises(NotGitRepository, match="app nosuch does not exist"):
        AppBackend(ctx).open_repository("/nosuch")


def test_invalid_name_is_not_a_repository_and_touches_nothing(ctx: Context) -> None:
    with pytest.raises(NotGitRepository, match="invalid app name"):
        AppBackend(ctx).open_repository("/../../etc")
    assert not ctx.state.repos_dir.exists()

"""A command's exit status is the process's: `run APP CMD` exits with CMD's status, on the host CLI and over
SSH, and a non-zero status of the one-off command is not a pushdock error (no `error:` line)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Server, started, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("exitstatus")) as srv:
        yield srv


@pytest.fixture(scope="module")
def app(server: Server) -> str:
    name = unique("exit")
    cp = server.push(server.app_repo(name), name)
    assert cp.returncode == 0, cp.stderr
    return name


@pytest.mark.parametrize("door", ["cli", "ssh"])
def test_run_exits_with_the_commands_status_and_no_error_line(server: Server, app: str, door: str) -> None:
    call = server.cli if door == "cli" else server.ssh
    cp = call("run", "-T", app, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert cp.returncode == 3, cp
    assert cp.stdout == "out\n"
    assert "error:" not in cp.stderr and cp.stderr.strip() == "err", cp.stderr
    cp = call("run", "-T", app, "false", check=False)
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "")
    cp = call("run", "-T", app, "true", check=False)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "", "")


@pytest.mark.parametrize("door", ["cli", "ssh"])
def test_pushdock_errors_still_print_one_error_line(server: Server, door: str) -> None:
    call = server.cli if door == "cli" else server.ssh
    cp = call("run", "-T", unique("missing"), "true", check=False)
    assert cp.returncode != 0 and cp.stderr.startswith("error: ") and cp.stderr.count("\n") == 1, cp.stderr

"""Content of a push is read on the host only inside its own tree: symlinks out are refused, never followed.

Every test pushes real symlinks (git mode 120000) with the real git client over SSH into a real
`pushdock serve`, which builds with the real Docker engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Server, started, unique

pytestmark = pytest.mark.docker

SECRET = "webhook-secret-0123456789-LEAKME"
MARKER = "HOST-ONLY-CONTENT-7f3a"
OUT_OF_TREE = "is a symlink out of the pushed tree"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("pushed")) as srv:
        yield srv


def link(work: Path, name: str, target: str | Path) -> None:
    path = work / name
    if path.exists() or path.is_symlink():
        path.unlink()
    os.symlink(target, path)


def rejected(server: Server, app: str, work: Path) -> str:
    """Push, which must be rejected; the output, checked to hold nothing read from outside the tree."""
    server.commit(work, "symlink")
    cp = server.push(work, app)
    assert cp.returncode != 0, cp.stderr
    assert "[remote rejected] main -> main" in cp.stderr
    for secret in (SECRET, MARKER, "root:"):
        assert secret not in cp.stderr
    return cp.stderr


def test_a_procfile_linking_to_another_apps_secret_is_refused_unread(server: Server) -> None:
    other = unique("victim")
    server.cli("apps:create", other)
    server.cli("webhooks:set", other, "secret", SECRET)
    app = unique("sym")
    work = server.app_repo(app)
    link(work, "Procfile", server.data / "keys" / "webhooks" / f"{other}.json")
    err = rejected(server, app, work)
    assert f"Procfile {OUT_OF_TREE}" in err
    events = (server.data / "events.log").read_text()
    assert SECRET not in events
    assert SECRET not in (server.base / "serve.log").read_text()


def test_a_procfile_linking_to_a_host_file_is_refused(server: Server) -> None:
    host_file = server.base / "host-procfile"
    host_file.write_text(f"web: echo {MARKER}\nshadow: cat /etc/shadow\n")
    app = unique("sym")
    work = server.app_repo(app)
    for target in (host_file, "/etc/shadow", f"../../../../../../../..{host_file}"):
        link(work, "Procfile", target)
        assert f"Procfile {OUT_OF_TREE}" in rejected(server, app, work)
    cp = server.cli("releases", app, "--format", "json", check=False)
    assert MARKER not in cp.stdout + cp.stderr


@pytest.mark.parametrize(("name", "content"), [
    ("app.json", json.dumps({"formation": {"web": {"quantity": 1}}, "note": MARKER})),
    (".env", f"BUILDPACK_URL=https://example.com/{MARKER}.git\n"),
    (".buildpacks", f"https://example.com/{MARKER}.git\n"),
    ("project.toml", f'[_]\nid = "{MARKER}"\n'),
    ("Dockerfile", f"FROM pushdock/stack:bookworm\nCMD echo {MARKER}\n"),
    (".dockerignore", f"{MARKER}\n"),
])
def test_every_file_pushdock_reads_is_refused_through_a_link_out(server: Server, name: str, content: str) -> None:
    host_file = server.base / f"host-{name.strip('.')}"
    host_file.write_text(content)
    app = unique("sym")
    work = server.app_repo(app)
    link(work, name, host_file)
    assert f"{name} {OUT_OF_TREE}" in rejected(server, app, work)


def test_a_dockerfile_build_context_sends_links_as_links(server: Server) -> None:
    """The tar sent to the engine holds the symlink itself: in the build it resolves in the container."""
    host_file = server.base / "host-context"
    host_file.write_text(MARKER + "\n")
    app = unique("sym")
    work = server.app_repo(app)
    link(work, "leak", host_file)
    dockerfile = (work / "Dockerfile").read_text()
    (work / "Dockerfile").write_text(dockerfile + "COPY . /ctx/\nRUN test -L /ctx/leak && (cat /ctx/leak || true)\n")
    server.commit(work, "a link in the context")
    cp = server.push(work, app)
    assert cp.returncode == 0, cp.stderr
    assert MARKER not in cp.stderr


def test_links_inside_the_tree_are_followed(server: Server) -> None:
    app = unique("sym")
    work = server.app_repo(app, body="inside")
    (work / "deploy").mkdir()
    (work / "deploy" / "Procfile").write_text("web: python3 -u /app/server.py\nclock: sleep infinity\n")
    link(work, "Procfile", "deploy/Procfile")
    server.commit(work, "Procfile by a link inside the tree")
    cp = server.push(work, app)
    assert cp.returncode == 0, cp.stderr
    assert server.get(app) == (200, "inside")
    releases = json.loads(server.cli("releases", app, "--format", "json").stdout)
    assert "clock" in json.dumps(releases)

"""A preview's own database, end to end: `previews:set APP database clone` gives `APP-pr-N` a PostgreSQL service
of its own, restored from the parent's newest verified backup; what the preview writes never reaches the
parent's; `closed` destroys the service (container, network, volume). Real serve, Docker, nginx and postgres;
GitHub is the local stand-in of tests/fakes/github.py."""

from __future__ import annotations

import json
import uuid

import docker
import pytest

from tests.fakes.github import deliver, listed, open_pr, pr_payload, serving, wait_gone, wait_state
from tests.harness import Server, unique

pytestmark = pytest.mark.docker
SECRET = uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("previews-db")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def github(server):
    with serving(server) as fake:
        yield fake


def env_of(server: Server, app: str) -> dict[str, str]:
    return json.loads(server.cli("config:export", app, "--format", "json").stdout)


def rows(server: Server, app: str) -> set[str]:
    status, body = server.get(app, "/read")
    assert status == 200, body
    return set(body.split(","))


def test_clone_restores_the_newest_verified_backup_into_a_database_of_its_own(server, github) -> None:
    app = unique("shop")
    db = app  # a service named like its app, as is common: the preview must not take its record along
    server.cli("postgres:create", db, timeout=900)
    work = server.app_repo(app, sample="postgres-web")
    assert server.push(work, app).returncode == 0
    server.ssh("postgres:link", db, app)
    assert server.get(app, "/write?seed") == (200, "written")
    server.ssh("postgres:backup", db, "--verify")
    assert server.get(app, "/write?after-the-backup") == (200, "written")
    server.git("push", "-q", str(server.base / "github" / "site.git"), "main", cwd=work, check=True)
    for key, value in (("secret", SECRET), ("repo", github.url)):
        server.ssh("webhooks:set", app, key, value)
    server.ssh("previews:enable", app)
    server.ssh("previews:set", app, "database", "clone")
    parent_url = env_of(server, app)["DATABASE_URL"]

    preview = f"{app}-pr-4"
    head = open_pr(server, work, 4, "preview of the shop")
    assert deliver(server, app, pr_payload(github, "opened", 4, head), secret=SECRET)[0] == 202
    row = wait_state(server, app, 4, "deployed", head, timeout=300)
    assert row["services"] == [f"postgres:{preview}-postgres"]
    assert server.get(preview) == (200, "preview of the shop")
    assert server.get(preview, "/read") == (200, "seed")  # the backup's rows, not what came after it
    url = env_of(server, preview)["DATABASE_URL"]
    assert url != parent_url and f"@pushdock-postgres-{preview}-postgres:5432/{preview}-postgres" in url
    assert server.get(preview, "/write?preview-only") == (200, "written")
    assert rows(server, app) == {"seed", "after-the-backup"}
    services = json.loads(server.cli("postgres:list", "--format", "json").stdout)
    assert sorted(s["name"] for s in services) == sorted([app, f"{preview}-postgres"]), services
    info = json.loads(server.cli("postgres:info", f"{preview}-postgres", "--format", "json").stdout)
    assert info["links"] == [f"{preview} (DATABASE_URL)"]

    assert deliver(server, app, pr_payload(github, "closed", 4, head), secret=SECRET)[0] == 202
    wait_gone(server, app, 4)
    assert preview not in server.cli("postgres:list").stdout
    engine = docker.from_env()
    left = engine.containers.list(all=True, filters={"name": info["container"]})
    assert [(c.name, c.status, c.labels) for c in left] == []
    assert engine.volumes.list(filters={"name": info["container"]}) == []
    assert env_of(server, app)["DATABASE_URL"] == parent_url and rows(server, app) == {"seed", "after-the-backup"}
    assert listed(server, app) == {}

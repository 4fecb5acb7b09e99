"""The machinery every proxy shares: group commit across callers, conflicts, per-app fallback, the table.

A `RecordingProxy` (a real ProxyEngine subclass whose `_commit` records instead of driving a process)
stands in for nginx/caddy: nothing is mocked, the queue, lock and table are the real ones on disk.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from proxies import model
from proxies.batch import Batcher, Change
from proxies.engine import ProxyEngine
from proxies.model import Listener, Route, Table, conflict, load_table, ports_in_use, save_table
from pushdock.context import Context
from pushdock.errors import Conflict, NotFound, PushdockError, UsageError
from pushdock.routing import Upstream
from tests.harness import free_port


class RecordingProxy(ProxyEngine):
    name = "recording"

    def __init__(self, delay: float = 0.0, refuse: set[str] | None = None) -> None:
        super().__init__()
        self.commits: list[set[str]] = []
        self.delay = delay
        self.refuse = refuse or set()
        self.live: Table = {}

    def _commit(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        time.sleep(self.delay)
        bad = changed & self.refuse
        if bad:
            raise PushdockError(f"refused {sorted(bad)[0]}")
        self.commits.append(set(changed))
        self.live = dict(new)

    def report(self, ctx: Context) -> dict[str, Any]:
        return {"proxy": self.name, "running": True}


def up(port: int) -> Upstream:
    return Upstream("127.0.0.1", port)


def test_apply_validates_then_commits_and_keeps_the_table(ctx: Context) -> None:
    px = RecordingProxy()
    px.apply(ctx, "web", ["Web.Example.com", "web.example.com"], [up(2), up(1), up(1)])
    route = px.routes(ctx)["web"]
    assert route.domains == ("web.example.com",)
    assert route.upstreams == (up(1), up(2))
    assert route.listeners == (Listener("http", ctx.settings.proxy_port),)
    assert px.commits == [{"web"}]
    px.apply(ctx, "web", ["web.example.com"], [up(1), up(2)])  # same route: nothing changes
    assert px.commits == [{"web"}, set()]
    with pytest.raises(UsageError, match="invalid domain"):
        px.apply(ctx, "web", ["-x.com"], [up(1)])
    with pytest.raises(UsageError):
        px.apply(ctx, "web", ["a..b"], [up(1)])
    with pytest.raises(UsageError):
        px.apply(ctx, "web", ["a" * 300], [up(1)])
    with pytest.raises(UsageError, match="upstream"):
        px.apply(ctx, "web", ["web.example.com"], [Upstream("1.2.3.4;", 80)])
    assert len(px.commits) == 2 and not list((px.root(ctx) / "queue").iterdir())
    px.remove(ctx, "web")
    assert px.routes(ctx) == {} and px.commits[-1] == {"web"}


def test_a_domain_of_another_app_is_a_conflict(ctx: Context) -> None:
    px = RecordingProxy()
    px.apply(ctx, "one", ["shared.test"], [up(1)])
    with pytest.raises(Conflict, match=r"domain shared\.test is already routed to app one"):
        px.apply(ctx, "two", ["two.test", "shared.test"], [up(2)])
    assert set(px.routes(ctx)) == {"one"}


def test_a_batch_is_one_commit_and_a_refused_app_fails_alone(ctx: Context) -> None:
    px = RecordingProxy(refuse={"bad"})
    with pytest.raises(PushdockError, match=r"1 app\(s\) not routed: bad: refused bad"):
        with px.batch(ctx):
            for app in ("a1", "a2", "bad", "a3"):
                px.apply(ctx, app, [f"{app}.test"], [up(1)])
            assert px.commits == []  # nothing committed inside the block
    # one commit of all four failed; then app by app: three succeed, `bad` fails alone
    assert px.commits == [{"a1"}, {"a2"}, {"a3"}]
    assert set(px.routes(ctx)) == {"a1", "a2", "a3"}
    px.refuse = set()
    with px.batch(ctx):
        for i in range(10):
            px.apply(ctx, f"b{i}", [f"b{i}.test"], [up(i + 1)])
    assert px.commits[-1] == {f"b{i}" for i in range(10)} and len(px.commits) == 4


def test_concurrent_callers_share_commits(ctx: Context) -> None:
    """While one caller reloads, the others queue; the next leader commits all of them at once."""
    px = RecordingProxy(delay=0.15)
    errors: list[BaseException] = []

    def apply(i: int) -> None:
        try:
            px.apply(ctx, f"app{i}", [f"app{i}.test"], [up(i + 1)])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(px.routes(ctx)) == {f"app{i}" for i in range(8)}
    assert sum(len(c) for c in px.commits) == 8
    assert len(px.commits) < 8, px.commits


def test_ensure_running_rerenders_routes_when_the_ports_change(ctx: Context) -> None:
    px = RecordingProxy()
    px.apply(ctx, "web", ["web.test"], [up(1)])
    ctx.settings.proxy_port = free_port()  # a port nothing holds: the commit checks it
    px.ensure_running(ctx)
    assert px.routes(ctx)["web"].listeners == (Listener("http", ctx.settings.proxy_port),)
    assert px.commits[-1] == {"web"}


def test_outcomes_reach_callers_in_other_processes(tmp_path: Path) -> None:
    """A leader writes the outcome of a change it committed for someone else; the error class survives."""
    b = Batcher(tmp_path)
    theirs = Change("their-id", "web", None, os.getpid(), 1)
    mine = Change.new("api", None)

    def commit(batch: list[Change]) -> dict[str, PushdockError | None]:
        return {c.id: (NotFound("gone") if c.app == "web" else None) for c in batch}

    b.queue.mkdir(parents=True)
    (b.queue / f"{theirs.seq:020d}-{theirs.id}.json").write_text(
        '[{"id": "their-id", "app": "web", "route": null, "pid": %d, "seq": 1}]' % os.getpid())
    assert b.submit([mine], commit) == {mine.id: None}
    with pytest.raises(NotFound, match="gone"):
        out = b._collect({"their-id"})["their-id"]
        assert out is not None
        raise out


def test_changes_of_dead_processes_are_dropped(tmp_path: Path) -> None:
    b = Batcher(tmp_path)
    b.queue.mkdir(parents=True)
    dead = 2**22 + 12345  # above pid_max defaults: no such process
    (b.queue / "00000000000000000001-dead.json").write_text(
        '[{"id": "dead", "app": "web", "route": null, "pid": %d, "seq": 1}]' % dead)
    seen: list[str] = []

    def commit(batch: list[Change]) -> dict[str, PushdockError | None]:
        seen.extend(c.id for c in batch)
        return {}

    mine = Change.new("api", None)
    b.submit([mine], commit)
    assert seen == [mine.id] and not list(b.queue.iterdir())


def test_a_table_is_one_route_per_line_and_older_one_line_tables_are_read(tmp_path: Path) -> None:
    """A process that changes one route of 1000 writes the others back as read (no serializing of each)."""
    path = tmp_path / "routes.json"
    table = {f"app{i}": Route(f"app{i}", (f"app{i}.test",), (up(i),), (Listener("http", 80),)) for i in range(3)}
    path.write_text(json.dumps({app: r.to_json() for app, r in table.items()}))  # as older pushdocks wrote it
    assert load_table(path) == table
    save_table(path, table)
    before = path.read_text().splitlines()
    assert len(before) == 5 and json.loads(path.read_text()) == {app: r.to_json() for app, r in table.items()}
    model._cache.clear()  # a fresh process
    changed = load_table(path)
    changed["app1"] = dataclasses.replace(changed["app1"], upstreams=(up(9),))
    save_table(path, changed)
    after = path.read_text().splitlines()
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, True, False, True, True]
    model._cache.clear()
    assert load_table(path) == changed


def test_rereading_a_changed_table_keeps_only_the_latest_routes(tmp_path: Path) -> None:
    """serve re-reads a table each time a push changes it (another process's write): what it keeps of the
    routes must stay one table's worth, not grow with every read (serve reached 128 MB at 500 apps)."""
    path = tmp_path / "routes.json"
    gc.collect()
    alive = sum(isinstance(o, Route) for o in gc.get_objects())
    for n in range(30):
        table = {f"app{i}": Route(f"app{i}", (f"app{i}.test",), (up(i + n),), (Listener("http", 80),))
                 for i in range(100)}
        save_table(path, table)
        model._cache.clear()  # as if another process had written it
        del table
        assert len(load_table(path)) == 100
    gc.collect()
    assert sum(isinstance(o, Route) for o in gc.get_objects()) - alive <= 100


def test_table_round_trip_and_model_checks(tmp_path: Path) -> None:
    r1 = Route("a", ("a.test",), (up(1),), (Listener("http", 80), Listener("https", 443)))
    r2 = Route("b", ("b.test",), (), (Listener("http", 8080),), redirect_to=None, health_path="/health")
    save_table(tmp_path / "t.json", {"a": r1, "b": r2})
    assert load_table(tmp_path / "t.json") == {"a": r1, "b": r2}
    assert load_table(tmp_path / "missing.json") == {}
    clash = Route("c", ("c.test",), (), (Listener("http", 443),))
    err = conflict({"a": r1}, clash)
    assert isinstance(err, Conflict) and "port 443 serves https for app a" in err.message
    assert conflict({"a": r1}, Route("a", ("a.test",), (), (Listener("http", 443),))) is None  # itself
    assert [str(li) for li in ports_in_use({"a": r1, "b": r2}, Listener("http", 80))] == [
        "http:80", "https:443", "http:8080"]

"""A route change in a process that has read nothing yet (a push's worker): what it must read, and only that.

The tables are the real files; the engine test steers through the kernel for real (root and nft, as
tests/unit/proxies/test_stable.py; skipped otherwise) with a `SteeringProxy` whose `_commit` records what the
proxy itself would be told instead of driving nginx or caddy.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from proxies import model, stable
from proxies.engine import ProxyEngine
from proxies.model import Listener, Route, Table, load_routes, load_table, save_table
from pushdock.context import Context
from pushdock.routing import Upstream


def up(port: int) -> Upstream:
    return Upstream("127.0.0.1", port)


def table(n: int) -> Table:
    return {f"app{i}": Route(f"app{i}", (f"app{i}.test",), (up(1000 + i),), (Listener("http", 80),))
            for i in range(n)}


def test_load_routes_decodes_only_the_asked_lines(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    routes = table(5)
    save_table(path, routes)
    model._cache.clear()  # a fresh process
    lines = path.read_text().split("\n")
    lines[2] = lines[2][:40] + "<not json>"  # app1's line: never decoded when only app3 is asked for
    path.write_text("\n".join(lines))
    assert load_routes(path, {"app3", "nope"}) == {"app3": routes["app3"]}
    with pytest.raises(ValueError):
        load_table(path)
    assert load_routes(tmp_path / "missing.json", {"app3"}) == {}


@pytest.mark.parametrize("dump", [
    json.dumps,  # one line, as older pushdocks wrote it
    lambda raw: json.dumps(raw, indent=2),  # edited by hand
    lambda raw: json.dumps(raw, indent=0),  # lines starting with `"app":` that are not routes
    lambda raw: "{\n" + ",\n".join(json.dumps(a) + ":" + json.dumps(r) for a, r in raw.items()) + "\n}\n",
])
def test_tables_not_as_save_table_writes_them_are_read_whole(tmp_path: Path, dump: Any) -> None:
    routes = table(4)
    routes["app"] = Route("app", ("app.test",), (up(7),), (Listener("http", 80),))
    path = tmp_path / "routes.json"
    path.write_text(dump({a: r.to_json() for a, r in routes.items()}))
    for app in routes:
        assert load_routes(path, {app}) == {app: routes[app]}
    assert load_table(path) == routes


def test_a_table_read_in_one_decode_keeps_each_line_for_the_next_save(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    save_table(path, table(3))
    before = path.read_text().splitlines()
    model._cache.clear()
    changed = load_table(path)
    assert all(changed[a] is model._cache[path][2][a][0] for a in changed)
    changed["app2"] = changed["app2"].with_upstreams((up(9),))
    save_table(path, changed)
    assert [a == b for a, b in zip(before, path.read_text().splitlines(), strict=True)] == [
        True, True, True, False, True]
    # a line count that does not match (a duplicate key written by hand): the routes, no lines kept
    path.write_text('{\n"app0":' + json.dumps(changed["app0"].to_json()) + ',\n"app0":'
                    + json.dumps(changed["app0"].to_json()) + "\n}\n")
    model._cache.clear()
    assert load_table(path) == {"app0": changed["app0"]} and model._cache[path][2] == {}


def test_with_upstreams_is_replace() -> None:
    r = Route("a", ("a.test",), (up(1),), (Listener("http", 80),), health_path="/up", tuning=(("k", "v"),))
    copy = r.with_upstreams((up(2), up(3)))
    assert copy == dataclasses.replace(r, upstreams=(up(2), up(3))) and hash(copy) == hash(
        dataclasses.replace(r, upstreams=(up(2), up(3))))
    assert r.upstreams == (up(1),) and type(copy) is Route


def test_the_collector_pause_puts_back_what_it_found() -> None:
    assert gc.isenabled()
    with model.collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with model.collector_paused():
            pass
        assert not gc.isenabled()  # whoever turned it off decides when it comes back
    finally:
        gc.enable()


class SteeringProxy(ProxyEngine):
    name = "steering"
    steer_upstreams = True
    drain_timeout = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[set[str]] = []

    def _commit(self, ctx: Context, old: Table, new: Table, changed: set[str]) -> None:
        self.commits.append(set(changed))

    def pids(self, ctx: Context) -> list[int]:
        return [os.getpid()]  # "running": an upstream change does not tell it

    def report(self, ctx: Context) -> dict[str, Any]:
        return {"proxy": self.name, "running": True}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")
def test_a_fresh_process_upstream_change_reads_one_line_of_what_the_proxy_was_given(ctx: Context) -> None:
    px = SteeringProxy()
    with px.batch(ctx):
        for i in range(20):
            px.apply(ctx, f"app{i}", [f"app{i}.test"], [up(2000 + i)])
    proxied = px._proxied_path(ctx)
    try:
        assert px.commits == [{f"app{i}" for i in range(20)}]
        for k in (1, 2):  # twice: each time as a process that has read nothing yet
            model._cache.clear()
            stable._views.clear()
            stable._installed.clear()
            stable._slot_files.clear()
            px.apply(ctx, "app7", ["app7.test"], [up(3000 + k)])
            assert px.commits == [{f"app{i}" for i in range(20)}]  # the proxy is not told
            assert proxied not in model._cache  # never parsed whole
        rules = stable.Stable(px.root(ctx)).installed()
        assert rules is not None and up(3002) in rules.values() and up(3001) not in rules.values()
        assert px.routes(ctx)["app7"].upstreams == (up(3002),)
        model._cache.clear()
        px.apply(ctx, "app7", ["app7.test", "www.app7.test"], [up(3002)])  # a domain change: the proxy is told
        assert px.commits[-1] == {"app7"} and load_table(proxied)["app7"].domains == ("app7.test", "www.app7.test")
    finally:
        stable.Stable(px.root(ctx)).remove()

"""The JSON API over real HTTP (uvicorn) and real worker processes: the role matrix of every endpoint, the
audit events (door http) and the OpenAPI document. No Docker here: endpoints that would reach the engine are
checked for who may call them (a refusal comes before the engine); the e2e browser test deploys for real."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pushdock import tokens
from pushdock.context import Context
from web.door import HttpDoor

MINE, OTHER = "mine", "other"
ADMIN_ONLY = {"create", "destroy", "config-values"}
# name, method, path, body; {app} is the app the call is about
ENDPOINTS: list[tuple[str, str, str, Any]] = [
    ("list", "GET", "/api/v1/apps", None),
    ("create", "POST", "/api/v1/apps", {"name": "{app}-new"}),
    ("report", "GET", "/api/v1/apps/{app}", None),
    ("destroy", "DELETE", "/api/v1/apps/{app}", None),
    ("releases", "GET", "/api/v1/apps/{app}/releases", None),
    ("rollback", "POST", "/api/v1/apps/{app}/rollback", {"release": "v1"}),
    ("processes", "GET", "/api/v1/apps/{app}/processes", None),
    ("scale", "POST", "/api/v1/apps/{app}/scale", {"formation": {"web": 1}}),
    ("restart", "POST", "/api/v1/apps/{app}/restart", None),
    ("config", "GET", "/api/v1/apps/{app}/config", None),
    ("config-values", "GET", "/api/v1/apps/{app}/config?values=true", None),
    ("domains", "GET", "/api/v1/apps/{app}/domains", None),
    ("domain-add", "POST", "/api/v1/apps/{app}/domains", {"domain": "www.{app}.example.org"}),
    ("domain-remove", "DELETE", "/api/v1/apps/{app}/domains/www.{app}.example.org", None),
    ("build-log", "GET", "/api/v1/apps/{app}/builds/latest/log", None),
    ("events", "GET", "/api/v1/events", None),
    ("services", "GET", "/api/v1/services/postgres", None),
    ("backups", "GET", "/api/v1/services/postgres/{app}-db/backups", None),
]
APP_SCOPED = {name for name, _, path, _ in ENDPOINTS if "{app}" in path and name != "backups"}


def call(port: int, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        raw = resp.read().decode()
        kind = resp.getheader("Content-Type") or ""
        return resp.status, json.loads(raw) if kind.startswith("application/json") else raw
    finally:
        conn.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str], Context]]:
    from pushdock.settings import Settings
    from pushdock.state import Identity

    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), http_host="127.0.0.1", http_port=0,
                        ssh_port=0, proxy_port=0)
    ctx = Context(settings=settings, identity=Identity(name="tester", role="admin", door="cli"))
    for app in (MINE, OTHER):
        ctx.state.create_app(app)
        ctx.state.set_env(app, {"SECRET_KEY": "s3cr3t-value", "PLAIN": "x"})
    secrets = {"admin": tokens.add_token(ctx, "ops")[1],
               "deployer": tokens.add_token(ctx, "ci-mine", role="deployer", apps=(MINE,))[1],
               "stranger": tokens.add_token(ctx, "ci-other", role="deployer", apps=(OTHER,))[1],
               "bad": "pdt_" + "x" * 43}
    door = HttpDoor(ctx)
    door.start()
    yield door.address[1], secrets, ctx
    door.stop()


def expected(caller: str, endpoint: str) -> str:
    """`allowed`, `refused` (403) or `unauthenticated` (401)."""
    if caller in ("bad", "none"):
        return "unauthenticated"
    if caller == "admin":
        return "allowed"
    if endpoint in ADMIN_ONLY:
        return "refused"
    if caller == "stranger" and endpoint in APP_SCOPED:
        return "refused"
    return "allowed"


@pytest.mark.parametrize("endpoint", [e[0] for e in ENDPOINTS])
def test_the_role_matrix(api, endpoint: str) -> None:
    port, secrets, ctx = api
    name, method, path, body = next(e for e in ENDPOINTS if e[0] == endpoint)
    for caller in ("none", "bad", "stranger", "deployer", "admin"):
        token = None if caller == "none" else secrets[caller]
        url = path.replace("{app}", MINE)
        data = json.loads(json.dumps(body).replace("{app}", MINE)) if body is not None else None
        if endpoint == "destroy" and caller == "admin":
            url = path.replace("{app}", "doomed")
            ctx.state.create_app("doomed")
        status, answer = call(port, method, url, token, data)
        want = expected(caller, endpoint)
        where = f"{endpoint} as {caller}: {status} {answer}"
        if want == "unauthenticated":
            assert status == 401 and "token" in answer["error"], where
        elif want == "refused":
            assert status == 403 and "error" in answer, where
        else:
            assert status not in (401, 403), where
            assert "Traceback" not in str(answer), where


def test_what_each_role_sees(api) -> None:
    port, secrets, ctx = api
    names = lambda caller: {a["name"] for a in call(port, "GET", "/api/v1/apps", secrets[caller])[1]}  # noqa: E731
    assert {MINE, OTHER} <= names("admin")
    assert names("deployer") == {MINE} and names("stranger") == {OTHER}
    assert call(port, "GET", f"/api/v1/apps/{MINE}/config", secrets["deployer"]) == (
        200, {"keys": ["PLAIN", "SECRET_KEY"]})
    assert call(port, "GET", f"/api/v1/apps/{MINE}/config?values=true", secrets["admin"]) == (
        200, {"PLAIN": "x", "SECRET_KEY": "s3cr3t-value"})
    status, report = call(port, "GET", f"/api/v1/apps/{MINE}", secrets["deployer"])
    assert status == 200 and isinstance(report, dict)
    assert call(port, "GET", f"/api/v1/apps/{MINE}/releases", secrets["deployer"]) == (200, [])
    assert call(port, "GET", "/api/v1/apps/nope", secrets["admin"])[0] == 404
    assert call(port, "POST", "/api/v1/apps", secrets["admin"], {"name": "Bad Name"})[0] == 400
    call(port, "GET", f"/api/v1/apps/{OTHER}/releases", secrets["stranger"])
    events = call(port, "GET", "/api/v1/events?n=500", secrets["stranger"])[1]
    assert events and all(e["app"] == OTHER for e in events)  # a deployer sees only its apps' events


def test_every_call_is_an_event_with_door_http_and_no_token(api) -> None:
    port, secrets, ctx = api
    call(port, "GET", f"/api/v1/apps/{MINE}/releases", secrets["deployer"])
    call(port, "GET", f"/api/v1/apps/{OTHER}/releases", secrets["deployer"])
    call(port, "GET", "/api/v1/apps", secrets["bad"])
    events = ctx.state.read_events(50)
    mine = [e for e in events if e["who"] == "ci-mine" and e["action"] == "releases:list"]
    assert mine[-2]["door"] == mine[-1]["door"] == "http"
    assert mine[-2]["result"] == "ok" and mine[-1]["result"] != "ok" and mine[-1]["app"] == OTHER
    assert any(e["who"] == "(unknown token)" and e["result"] == "denied" for e in events)
    logged = (ctx.state.path("events.log")).read_text() + "".join(
        p.read_text() for p in ctx.state.path("logs").glob("*.log"))
    for secret in secrets.values():
        assert secret not in logged
    assert "s3cr3t-value" not in logged


def test_the_openapi_document(api) -> None:
    import re

    port, _, _ = api
    status, doc = call(port, "GET", "/api/openapi.json", None)
    assert status == 200 and doc["openapi"].startswith("3.")
    templates = {re.compile(re.sub(r"\\{[a-z_]+\\}", "[^/]+", re.escape(p)) + r"\Z"): p for p in doc["paths"]}
    for _, method, path, _ in ENDPOINTS:
        concrete = path.split("?")[0].replace("{app}", MINE)
        documented = [p for rx, p in templates.items() if rx.match(concrete)]
        assert any(method.lower() in doc["paths"][p] for p in documented), path


def test_a_deploys_log_streams_as_server_sent_events_while_it_runs(api) -> None:
    """A build record written as the pipeline writes it (pushdock/builds.py), its log growing while a client
    follows it: lines arrive as they are written, then an `end` event once the record says it is over."""
    import os
    import threading
    import time as clock

    from pushdock import builds

    port, secrets, ctx = api
    record = builds.Build(app=MINE, id=1, sha="c" * 40, started=clock.time(), who="tester", pid=os.getpid(),
                          pid_start=builds._process_start(os.getpid()))
    ctx.state.set_json(builds.PLUGIN, MINE, "1.json", record.__dict__)
    log = ctx.state.build_log(MINE, 1)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("-----> Building mine\n")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/api/v1/apps/{MINE}/builds/latest/log", headers={"Authorization": f"Bearer {secrets['deployer']}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    assert resp.readline() == b"data: -----> Building mine\n"

    def finish() -> None:
        with open(log, "a") as f:
            f.write("-----> Releasing v1\n")
            f.flush()
            clock.sleep(0.5)
            f.write("=====> mine deployed\n")
        ctx.state.set_json(builds.PLUGIN, MINE, "1.json", {**record.__dict__, "result": "succeeded", "release": "v1"})

    threading.Thread(target=finish).start()
    rest = resp.read().decode()
    conn.close()
    assert rest.strip().split("\n\n") == ["data: -----> Releasing v1", "data: =====> mine deployed",
                                          'event: end\ndata: {"result": "succeeded", "release": "v1"}']
    assert call(port, "GET", f"/api/v1/apps/{MINE}/builds/latest/log", secrets["stranger"])[0] == 403

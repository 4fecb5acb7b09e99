"""The docker-local scheduler against the real Docker engine.

The proxy boundary is faked: `route` is a recording callable that, like the real proxy, only returns
once traffic could flow, and here checks that every upstream it is given answers (and that the old
release still answers at switch time: nothing old stops before the switch). The real nginx switch
and drain are tested with the proxies. The app is tests/apps/pyweb, built once per session FROM the
local stack image under a unique tag and removed at the end.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from pushdock.checks import Healthcheck
from pushdock.context import Context
from pushdock.errors import DeployFailed
from pushdock.routing import Upstream
from pushdock.settings import Settings
from pushdock.state import Release
from schedulers.docker_local.scheduler import DockerLocalScheduler
from tests.harness import FakeRoute, Out, upstream_get

pytestmark = pytest.mark.docker

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "pyweb"
WORKER = "while true; do echo tick $DYNO; sleep 0.3; done"


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="session")
def image(engine: docker.DockerClient):
    tag = f"pushdock-test-pyweb:{secrets.token_hex(4)}"
    engine.images.build(path=str(APP_DIR), tag=tag, rm=True, forcerm=True)
    yield tag
    engine.images.remove(tag, force=True)


@pytest.fixture
def ctx(tmp_path: Path, engine: docker.DockerClient):
    settings = Settings(data_dir=tmp_path / "data", ready_timeout=20, stop_timeout=3)
    yield Context(settings=settings)
    label = f"pushdock.data-dir={settings.data_dir.absolute()}"
    for c in engine.containers.list(all=True, filters={"label": label}):
        c.remove(force=True)


@pytest.fixture
def app() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
def sched() -> DockerLocalScheduler:
    return DockerLocalScheduler()


get = upstream_get


def rel(app: str, number: int, image: str, *, formation: dict[str, int] | None = None,
        processes: dict[str, str] | None = None, message: str | None = None) -> Release:
    return Release(
        app=app,
        number=number,
        image=image,
        env={"MESSAGE": message or f"v{number}"},
        processes=processes or {"web": ""},
        formation=formation or {"web": 1},
    )


def deploy_v1(sched: DockerLocalScheduler, ctx: Context, app: str, image: str, **kw) -> Upstream:
    route = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image, **kw), route, Out().progress)
    return route.calls[-1][0]


def test_deploy_v1_routes_one_upstream_that_answers(sched, ctx, app, image, engine):
    out = Out()
    route = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), route, out.progress)

    assert len(route.calls) == 1 and len(route.calls[0]) == 1
    up = route.calls[0][0]
    assert up.host == "127.0.0.1" and route.answers == [["v1"]]
    assert "-----> Starting web (1) of v1" in out.lines
    assert f"       web.1 ready on {up}" in out.lines

    [inst] = sched.instances(ctx, app)
    assert (inst.process, inst.index, inst.release, inst.state, inst.upstream) == ("web", 1, 1, "running", up)
    assert re.fullmatch(rf"{app}\.web\.1\.v1\.[0-9a-f]{{4}}", inst.name)
    attrs = engine.containers.get(inst.id).attrs
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert (env["PORT"], env["DYNO"], env["PUSHDOCK_RELEASE"], env["MESSAGE"]) == ("5000", "web.1", "v1", "v1")
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["StopTimeout"] == 3
    assert attrs["Config"]["Labels"]["pushdock.data-dir"] == str(ctx.settings.data_dir.absolute())


def test_deploy_v2_web2_swaps_and_retires_v1(sched, ctx, app, image, engine):
    old = deploy_v1(sched, ctx, app, image)
    [v1] = sched.instances(ctx, app)
    route = FakeRoute(still_serving=[old])
    out = Out()
    release = rel(app, 2, image, formation={"web": 2, "worker": 1}, processes={"web": "", "worker": WORKER})
    sched.deploy(ctx, release, route, out.progress)

    assert len(route.calls) == 1 and len(route.calls[0]) == 2
    assert route.answers == [["v2", "v2"]]
    assert route.old_answers == ["v1"], "v1 must serve until the switch"
    insts = sched.instances(ctx, app)
    assert {(i.process, i.index, i.release, i.state) for i in insts} == {
        ("web", 1, 2, "running"), ("web", 2, 2, "running"), ("worker", 1, 2, "running")
    }
    assert next(i for i in insts if i.process == "worker").upstream is None
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(v1.id)
    assert "-----> Stopping 1 old container" in out.lines


def test_command_that_exits_fails_and_keeps_v1(sched, ctx, app, image):
    up = deploy_v1(sched, ctx, app, image)
    route = FakeRoute()
    out = Out()
    bad = rel(app, 2, image, processes={"web": "echo boom-from-app >&2; exit 3"})
    t0 = time.monotonic()
    with pytest.raises(DeployFailed, match=r"v2 did not start: web\.1 exited with status 3"):
        sched.deploy(ctx, bad, route, out.progress)
    assert time.monotonic() - t0 < 15
    assert route.calls == []
    assert "boom-from-app" in out.text
    assert [(i.release, i.state) for i in sched.instances(ctx, app)] == [(1, "running")]
    assert get(up) == "v1"


def test_web_that_never_listens_times_out_and_cleans_up(sched, ctx, app, image):
    up = deploy_v1(sched, ctx, app, image)
    ctx.settings.ready_timeout = 3
    t0 = time.monotonic()
    never = rel(app, 2, image, processes={"web": "sleep 1000"})
    expected = r"web\.1 did not answer HTTP on PORT=5000 within 3s: it listens on no TCP port \(read the port from"
    with pytest.raises(DeployFailed, match=expected):
        sched.deploy(ctx, never, FakeRoute(), Out().progress)
    assert time.monotonic() - t0 < 15
    assert [(i.release, i.state) for i in sched.instances(ctx, app)] == [(1, "running")]
    assert get(up) == "v1"


def test_route_failure_removes_new_containers(sched, ctx, app, image):
    up = deploy_v1(sched, ctx, app, image)

    def broken(upstreams: list[Upstream]) -> None:
        raise DeployFailed("nginx -t failed")

    with pytest.raises(DeployFailed, match="proxy switch failed: nginx -t failed"):
        sched.deploy(ctx, rel(app, 2, image), broken, Out().progress)
    assert [i.release for i in sched.instances(ctx, app)] == [1]
    assert get(up) == "v1"


def test_instances_logs_and_stop(sched, ctx, app, image):
    up = deploy_v1(sched, ctx, app, image, formation={"web": 1, "worker": 1},
                   processes={"web": "", "worker": WORKER})
    for n in range(3):
        get(up, f"/hit-{n}")
    # The app prints its access line as it answers, but the engine copies a container's output into its log
    # asynchronously: wait (bounded) until the three lines and a worker tick are in the log, then check them.
    every = logged_lines(sched, ctx, app, ["/hit-2", "worker.1: tick worker.1"])
    assert "web.1: listening on 5000 with MESSAGE=v1" in every
    assert "worker.1: tick worker.1" in every
    hits = [line for line in every if "/hit-" in line]
    assert [h.split()[2] for h in hits] == ["/hit-0", "/hit-1", "/hit-2"]
    assert every.index("web.1: listening on 5000 with MESSAGE=v1") < every.index(hits[0])
    assert all(line.startswith("web.1: ") for line in sched.logs(ctx, app, follow=False, tail=None,
                                                                     process="web"))
    last2 = list(sched.logs(ctx, app, follow=False, tail=2, process="web"))
    assert last2 == [line for line in every if line.startswith("web.1: ")][-2:]

    # follow: history tail first, then live lines; closing the generator stops its readers
    got = follow_until(sched, ctx, app, up, tail=1, marker="/live-1")
    assert got[0] == last2[-1] and "GET /live-1" in got[-1] and len(got) == 2
    got = follow_until(sched, ctx, app, up, tail=0, marker="/live-2")
    # no history: the first line is a probe requested while following (follow_until), the last one the marker
    assert "/probe-" in got[0] and "GET /live-2" in got[-1] and all("/probe-" in line for line in got[:-1]), got

    # web=0: the proxy stops routing, only the worker remains
    route = FakeRoute()
    sched.deploy(ctx, rel(app, 2, image, formation={"web": 0, "worker": 1}, processes={"worker": WORKER}),
                 route, Out().progress)
    assert route.calls == [[]]
    assert [(i.process, i.release) for i in sched.instances(ctx, app)] == [("worker", 2)]

    sched.stop(ctx, app)
    assert sched.instances(ctx, app) == []


def logged_lines(sched, ctx, app: str, wanted: list[str], timeout: float = 30) -> list[str]:
    """The app's whole log once every text in `wanted` is in one of its lines (or as it is at `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        every = list(sched.logs(ctx, app, follow=False, tail=None, process=None))
        if all(any(w in line for line in every) for w in wanted) or time.monotonic() > deadline:
            return every
        time.sleep(0.2)


def follow_until(sched, ctx, app: str, up: Upstream, *, tail: int, marker: str) -> list[str]:
    """Follow the web logs in a thread until `marker` (requested once following) shows up, then close.

    Following has begun once a line came through: the `tail` history lines, or (tail=0, no history) one of the
    `/probe-N` requests made until one shows up. Only then is the marker requested (a fixed wait would request
    it before the follow is attached when the machine is slow: it would be missed, or be the history line)."""
    got: list[str] = []
    done = threading.Event()

    def consume() -> None:
        gen = sched.logs(ctx, app, follow=True, tail=tail, process="web")
        for line in gen:
            got.append(line)
            if marker in line:
                break
        gen.close()
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    deadline = time.monotonic() + 30
    probes = 0
    while len(got) < max(tail, 1):
        assert time.monotonic() < deadline and not done.is_set(), f"follow delivered nothing: {got}"
        if tail == 0:
            get(up, f"/probe-{probes}")
            probes += 1
        time.sleep(0.3)
    get(up, marker)
    assert done.wait(10), f"follow did not deliver the live line: {got}"
    deadline = time.monotonic() + 5
    while any(t.name.startswith("pushdock-logs-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "log reader threads still running after close()"
        time.sleep(0.1)
    return got


def test_reconcile_restarts_recreates_and_removes_strays(sched, ctx, app, image, engine):
    release = rel(app, 1, image, formation={"web": 2})
    sched.deploy(ctx, release, FakeRoute(), Out().progress)
    web1, web2 = sched.instances(ctx, app)
    engine.containers.get(web1.id).kill()
    engine.containers.get(web2.id).remove(force=True)
    labels = {"pushdock.app": app, "pushdock.process": "web", "pushdock.index": "1",
              "pushdock.release": "9", "pushdock.data-dir": str(ctx.settings.data_dir.absolute())}
    stray = engine.containers.run(image, ["sleep", "1000"], labels=labels, detach=True, init=True,
                                  name=f"{app}.web.1.v9.stray")
    foreign = engine.containers.run(image, ["sleep", "1000"], detach=True, init=True,
                                    labels=labels | {"pushdock.data-dir": "/elsewhere"},
                                    name=f"{app}.web.1.v9.foreign-{secrets.token_hex(2)}")
    try:
        assert engine.containers.get(web1.id).status == "exited"
        route = FakeRoute()
        messages = sched.reconcile(ctx, release, route, Out().progress)
        assert "started web.1 of v1 (was exited)" in messages
        assert "created web.2 of v1 (was missing)" in messages
        assert any(m.startswith("removed stray web.1 of v9") for m in messages)
        assert len(route.calls) == 1 and route.answers == [["v1", "v1"]]
        insts = sched.instances(ctx, app)
        assert {(i.index, i.release, i.state) for i in insts} == {(1, 1, "running"), (2, 1, "running")}
        assert next(i for i in insts if i.index == 1).id == web1.id  # restarted, not replaced
        with pytest.raises(docker.errors.NotFound):
            stray.reload()
        foreign.reload()  # another data dir's container: untouched

        again = FakeRoute()
        assert sched.reconcile(ctx, release, again, Out().progress) == []
        assert sorted(again.calls[0]) == sorted(route.calls[0])
    finally:
        foreign.remove(force=True)


# -- release phase, one-off containers, checks ------------------------------------------------------
def one_offs(engine: docker.DockerClient, ctx: Context) -> list:
    label = f"pushdock.data-dir={ctx.settings.data_dir.absolute()}"
    return [c for c in engine.containers.list(all=True, filters={"label": label})
            if "pushdock.one-off" in c.labels]


def test_run_task_streams_output_and_fails_on_status_and_timeout(sched, ctx, app, image, engine):
    out = Out()
    sched.run_task(ctx, rel(app, 1, image), "echo migrating $DYNO $MESSAGE; echo to-stderr >&2", out.progress,
                   timeout=30, label="release")
    assert "-----> Running the release command: echo migrating $DYNO $MESSAGE; echo to-stderr >&2" in out.lines
    assert "       migrating release.1 v1" in out.lines and "       to-stderr" in out.lines
    with pytest.raises(DeployFailed, match=r"^release command failed with exit status 4$"):
        sched.run_task(ctx, rel(app, 1, image), "echo failing; exit 4", Out().progress, timeout=30, label="release")
    t0 = time.monotonic()
    with pytest.raises(DeployFailed, match=r"^predeploy command did not finish within 1s$"):
        sched.run_task(ctx, rel(app, 1, image), "sleep 60", Out().progress, timeout=1, label="predeploy")
    assert time.monotonic() - t0 < 10
    assert one_offs(engine, ctx) == []


def test_run_returns_the_exit_status_and_is_never_retired(sched, ctx, app, image, engine, capfd):
    deploy_v1(sched, ctx, app, image)
    status = sched.run(ctx, rel(app, 1, image), ["sh", "-c", "echo out $MESSAGE $DYNO; echo err >&2; exit 3"],
                       tty=False)
    assert status == 3
    captured = capfd.readouterr()
    assert "out v1 run.1" in captured.out and "err" in captured.err and "err" not in captured.out
    assert sched.run(ctx, rel(app, 1, image), ["true"], tty=False) == 0

    # a long one-off survives a deploy (a deploy retires instances, not one-offs)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(
        sched.run(ctx, rel(app, 1, image), ["sleep 4; exit 5"], tty=False)))
    t.start()
    deadline = time.monotonic() + 10
    while not one_offs(engine, ctx) and time.monotonic() < deadline:
        time.sleep(0.1)
    sched.deploy(ctx, rel(app, 2, image), FakeRoute(), Out().progress)
    t.join(20)
    assert result == [5]
    assert one_offs(engine, ctx) == []
    assert [i.release for i in sched.instances(ctx, app)] == [2]


def test_app_json_healthcheck_gates_the_switch(sched, ctx, app, image):
    up = deploy_v1(sched, ctx, app, image)
    check = Healthcheck(process="web", name="health", path="/health", content="v9", attempts=2, timeout=2, wait=0.2)
    bad = {"web": [check.to_dict()]}
    route = FakeRoute()
    out = Out()
    with pytest.raises(DeployFailed, match=r"web\.1 failed check health: GET /health answered without 'v9'"):
        sched.deploy(ctx, rel(app, 2, image).with_(checks=bad), route, out.progress)
    assert route.calls == [] and get(up) == "v1"
    good = {"web": [replace(check, content="v2").to_dict()]}
    out = Out()
    sched.deploy(ctx, rel(app, 2, image).with_(checks=good), FakeRoute(), out.progress)
    assert any(line.endswith("(check health passed)") for line in out.lines), out.lines


def test_checks_disabled_stops_old_first_and_restores_it_on_failure(sched, ctx, app, image, engine):
    up = deploy_v1(sched, ctx, app, image)
    ctx.state.create_app(app)
    ctx.state.set("checks", app, "disabled", "1")
    out = Out()
    with pytest.raises(DeployFailed, match="v2 did not start"):
        sched.deploy(ctx, rel(app, 2, image, processes={"web": "exit 3"}), FakeRoute(), out.progress)
    assert any("Stopping 1 old container first (checks disabled" in line for line in out.lines)
    assert "-----> Starting the 1 old container again" in out.lines
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            assert get(up) == "v1"
            break
        except OSError:
            time.sleep(0.2)
    assert get(up) == "v1"
    sched.deploy(ctx, rel(app, 2, image), FakeRoute(), Out().progress)
    assert [(i.release, i.state) for i in sched.instances(ctx, app)] == [(2, "running")]


def test_skip_and_restart_one_process_type(sched, ctx, app, image):
    ctx.state.create_app(app)
    ctx.state.set("checks", app, "skipped", "1")
    out = Out()
    release = rel(app, 1, image, formation={"web": 1, "worker": 1}, processes={"web": "", "worker": WORKER})
    routed: list[list[Upstream]] = []
    sched.deploy(ctx, release, routed.append, out.progress)  # skipped: the app may not listen yet
    assert "       web.1 ready on" in out.text and "(checks skipped)" in out.text and len(routed[0]) == 1
    ctx.state.delete("checks", app, "skipped")
    before = {i.process: i.id for i in sched.instances(ctx, app)}
    route = FakeRoute()
    sched.restart_process(ctx, release, route, Out().progress, process="worker")
    after = {i.process: i.id for i in sched.instances(ctx, app)}
    assert route.calls == [] and after["web"] == before["web"] and after["worker"] != before["worker"]
    sched.restart_process(ctx, release, route, Out().progress, process="web")
    final = {i.process: i.id for i in sched.instances(ctx, app)}
    assert len(route.calls) == 1 and route.answers == [["v1"]]
    assert final["web"] != before["web"] and final["worker"] == after["worker"]

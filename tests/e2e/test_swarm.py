"""The swarm scheduler on a real single-node Docker Swarm.

Swarm mode is turned on for this module only if it is off, and turned off again afterwards
(`swarm leave --force`, then the `docker_gwbridge` network it made); every service a test creates
is removed by label. This module's swarm has one node (two real ones: test_swarm_multinode.py), so some
multi-node paths (a task on another node without the image) are covered by unit tests on task records; the
image stream between engines runs from this engine into itself, and app.json checks of a task on
"another node" run against this node presented as a remote one.

Direct scheduler tests fake only the proxy boundary (`route` records and checks its upstreams, as in
test_docker_local.py); the push tests run the real `pushdock serve` with its real nginx.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import docker
import pytest

from pushdock.checks import Healthcheck
from pushdock.context import Context
from pushdock.errors import DeployFailed
from pushdock.routing import Upstream
from pushdock.settings import Settings
from pushdock.state import GLOBAL, Release
from schedulers.engine import NotReady
from schedulers.swarm import engine as sw
from schedulers.swarm import images as swarm_images
from schedulers.swarm import nodes as sn
from schedulers.swarm.ready import NewService, wait_ready
from schedulers.swarm.scheduler import SwarmScheduler
from tests import harness
from tests.harness import ROOT, EngineEvents, Out, Server, free_port, unique, upstream_get

# The whole module runs in make test's serial pass: three tests count failed requests under load, and turning
# swarm mode on and off on the shared engine disturbs other modules' containers (their DNS) while it happens.
pytestmark = [pytest.mark.docker, pytest.mark.zero_downtime]

WORKER = "while true; do echo tick $DYNO; sleep 0.3; done"


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="module")
def swarm_mode(engine: docker.DockerClient):
    """An active single-node swarm; left as it was found."""
    with harness.swarm_mode():
        yield


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient, swarm_mode):
    tag = f"pushdock-test-swarm:{secrets.token_hex(4)}"
    engine.images.build(path=str(ROOT / "tests" / "apps" / "e2e-web"), tag=tag, rm=True, forcerm=True)
    yield tag
    engine.images.remove(tag, force=True)


def remove_services(engine: docker.DockerClient, data_dir: Path) -> None:
    for s in engine.services.list(filters={"label": f"pushdock.data-dir={data_dir.absolute()}"}):
        with contextlib.suppress(docker.errors.NotFound):
            s.remove()


@pytest.fixture
def ctx(tmp_path: Path, engine: docker.DockerClient, swarm_mode):
    settings = Settings(data_dir=tmp_path / "data", ready_timeout=20, stop_timeout=2)
    yield Context(settings=settings)
    remove_services(engine, settings.data_dir)


@pytest.fixture
def app() -> str:
    return f"sw{secrets.token_hex(4)}"


@pytest.fixture
def sched() -> SwarmScheduler:
    return SwarmScheduler()


class FakeRoute(harness.FakeRoute):
    path = "/env/MESSAGE"


def get(u: Upstream, path: str = "/env/MESSAGE") -> str:
    return upstream_get(u, path)


def rel(app: str, number: int, image: str, *, formation: dict[str, int] | None = None,
        processes: dict[str, str] | None = None, env: dict[str, str] | None = None) -> Release:
    return Release(app=app, number=number, image=image, env={"MESSAGE": f"v{number}", **(env or {})},
                   processes=processes or {"web": ""}, formation=formation or {"web": 1})


def services_of(engine: docker.DockerClient, app: str) -> list[str]:
    return sorted(s.name for s in engine.services.list(filters={"label": f"pushdock.app={app}"}))


# -- the scheduler, directly ----------------------------------------------------------------------------
def test_deploy_runs_labelled_services_and_routes_every_task(sched, ctx, app, image, engine):
    out, route = Out(), FakeRoute()
    release = rel(app, 1, image, formation={"web": 2, "worker": 1}, processes={"web": "", "worker": WORKER})
    t0 = time.monotonic()
    sched.deploy(ctx, release, route, out.progress)
    took = time.monotonic() - t0

    assert services_of(engine, app) == [f"{app}-web-v1", f"{app}-worker-v1"]
    assert len(route.calls) == 1 and route.answers == [["v1", "v1"]]
    assert all(u.host == "127.0.0.1" for u in route.calls[0])
    web = engine.services.get(f"{app}-web-v1").attrs["Spec"]
    labels = {"pushdock.app": app, "pushdock.process": "web", "pushdock.release": "1",
              "pushdock.data-dir": str(ctx.settings.data_dir.absolute()), "pushdock.scheduler": "swarm"}
    assert web["Labels"] == labels
    spec = web["TaskTemplate"]["ContainerSpec"]
    assert spec["Labels"] == labels and spec["Init"] is True and spec["StopGracePeriod"] == 2_000_000_000
    assert web["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
    assert web["EndpointSpec"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 5000, "PublishMode": "host"}]
    assert web["Mode"]["Replicated"]["Replicas"] == 2

    insts = sched.instances(ctx, app)
    assert sorted((i.process, i.index, i.release, i.state) for i in insts) == [
        ("web", 1, 1, "running"), ("web", 2, 1, "running"), ("worker", 1, 1, "running")]
    assert sorted(i.upstream for i in insts if i.process == "web") == sorted(route.calls[0])
    container = engine.containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})[0]
    assert {k: container.labels[k] for k in labels} == labels
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["PORT"] == "5000" and env["DYNO"] in ("web.1", "web.2") and env["PUSHDOCK_RELEASE"] == "v1"
    print(f"\nswarm deploy web=2 worker=1: {took:.2f}s")


def test_redeploy_swaps_services_and_old_serves_until_the_switch(sched, ctx, app, image, engine):
    first = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), first, Out().progress)
    route, out = FakeRoute(still_serving=first.calls[0]), Out()
    sched.deploy(ctx, rel(app, 2, image, formation={"web": 3}), route, out.progress)
    assert route.answers == [["v2", "v2", "v2"]]
    assert route.old_answers == ["v1"], "v1 must serve until the switch"
    assert services_of(engine, app) == [f"{app}-web-v2"]
    assert "-----> Removing 1 old service" in out.lines
    # the same release again (ps:restart): a second service name, the first one retired
    sched.deploy(ctx, rel(app, 2, image, formation={"web": 1}), FakeRoute(), Out().progress)
    [name] = services_of(engine, app)
    assert name.startswith(f"{app}-web-v2-") and len(name) == len(f"{app}-web-v2-") + 4


def test_restart_process_swaps_one_service_and_leaves_the_others(sched, ctx, app, image, engine):
    release = rel(app, 1, image, formation={"web": 2, "worker": 1}, processes={"web": "", "worker": WORKER})
    first = FakeRoute()
    sched.deploy(ctx, release, first, Out().progress)
    worker = engine.services.get(f"{app}-worker-v1").id
    before = {i.id for i in sched.instances(ctx, app)}

    route, out = FakeRoute(still_serving=first.calls[0]), Out()
    sched.restart_process(ctx, release, route, out.progress, process="web")
    assert route.answers == [["v1", "v1"]] and route.old_answers == ["v1", "v1"], "old tasks serve until the switch"
    assert not set(route.calls[0]) & set(first.calls[0]), "new tasks, new host ports"
    [web] = [n for n in services_of(engine, app) if "-web-" in n]
    assert web.startswith(f"{app}-web-v1-") and engine.services.get(f"{app}-worker-v1").id == worker
    assert "-----> Removing 1 old service" in out.lines
    insts = sched.instances(ctx, app)
    assert sorted(i.upstream for i in insts if i.process == "web") == sorted(route.calls[0])
    assert {i.id for i in insts if i.process == "web"}.isdisjoint(before)

    # a worker restart: no proxy switch, the web service stays
    route = FakeRoute()
    sched.restart_process(ctx, release, route, Out().progress, process="worker")
    assert route.calls == [] and [n for n in services_of(engine, app) if "-web-" in n] == [web]
    assert [n for n in services_of(engine, app) if "-worker-" in n] != [f"{app}-worker-v1"]

    # a restart whose tasks crash: the new service goes, the old one never stopped serving
    crashing = rel(app, 1, image, formation={"web": 2, "worker": 1},
                   processes={"web": "echo boom-on-restart >&2; exit 3", "worker": WORKER})
    out = Out()
    with pytest.raises(DeployFailed, match=r"^v1 did not start: web\.\d exited with status 3$"):
        sched.restart_process(ctx, crashing, FakeRoute(), out.progress, process="web")
    assert "boom-on-restart" in out.text
    assert [n for n in services_of(engine, app) if "-web-" in n] == [web]
    assert [get(i.upstream) for i in sched.instances(ctx, app) if i.upstream] == ["v1", "v1"]


def test_resource_limits_go_into_each_task_template(sched, ctx, app, image, engine):
    """`resource:limit` on swarm: each service's task template carries its process type's limits (its own
    values over the app's `_default_`), and the engine applies them to the task containers."""
    from pushdock import resources
    from pushdock.resources import Limits

    resources.store(ctx.state, app, {"_default_": Limits(memory=64 << 20, cpu=0.5), "web": Limits(memory=96 << 20)})
    release = rel(app, 1, image, formation={"web": 1, "worker": 1}, processes={"web": "", "worker": WORKER})
    sched.deploy(ctx, release, FakeRoute(), Out().progress)
    limits = {p: engine.services.get(f"{app}-{p}-v1").attrs["Spec"]["TaskTemplate"]["Resources"]["Limits"]
              for p in ("web", "worker")}
    assert limits == {"web": {"NanoCPUs": 500_000_000, "MemoryBytes": 96 << 20},
                      "worker": {"NanoCPUs": 500_000_000, "MemoryBytes": 64 << 20}}
    [web] = engine.containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})
    assert (web.attrs["HostConfig"]["Memory"], web.attrs["HostConfig"]["NanoCpus"]) == (96 << 20, 500_000_000)
    # A release task is a one-shot service with the default limits; the kernel enforces them inside it.
    out = Out()
    sched.run_task(ctx, release, "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                   "cat /sys/fs/cgroup/memory/memory.limit_in_bytes", out.progress, timeout=30, label="release")
    assert f"       {64 << 20}" in out.lines, out.lines


def test_storage_mounts_go_into_every_task_template(sched, ctx, app, image, engine):
    """`storage:mount` on swarm: a bind mount in each service's task template and in one-shot release tasks (one
    node here; with more, the source path must exist on every node that may run a task: docs/swarm.md)."""
    from pushdock import storage

    path = storage.ensure_directory(ctx.state, f"{app}-up", None)
    (path / "seen").write_text("from the host\n")
    release = dataclasses.replace(
        rel(app, 1, image, formation={"web": 1, "worker": 1}, processes={"web": "", "worker": WORKER}),
        mounts=[f"{app}-up:/data:ro", f"{app}-up:/rw"])
    sched.deploy(ctx, release, FakeRoute(), Out().progress)
    for process in ("web", "worker"):
        spec = engine.services.get(f"{app}-{process}-v1").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert spec["Mounts"] == [{"Target": "/data", "Source": str(path), "Type": "bind", "ReadOnly": True},
                                  {"Target": "/rw", "Source": str(path), "Type": "bind"}]  # false is left out
        [task] = engine.containers.list(filters={"label": [f"pushdock.app={app}", f"pushdock.process={process}"]})
        assert task.exec_run(["cat", "/data/seen"]).output == b"from the host\n"
    out = Out()
    sched.run_task(ctx, release, "cat /data/seen; echo from-the-task > /rw/written; touch /data/no || echo ro",
                   out.progress, timeout=30, label="release")
    assert "       from the host" in out.lines and "       ro" in out.lines, out.lines
    assert (path / "written").read_text() == "from-the-task\n"


def test_crashing_or_silent_release_keeps_the_old_one(sched, ctx, app, image, engine):
    first = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), first, Out().progress)
    out = Out()
    t0 = time.monotonic()
    with pytest.raises(DeployFailed, match=r"^v2 did not start: web\.1 exited with status 3$"):
        sched.deploy(ctx, rel(app, 2, image, processes={"web": "echo boom-from-app >&2; exit 3"}), FakeRoute(),
                     out.progress)
    assert time.monotonic() - t0 < 15
    assert "boom-from-app" in out.text
    assert services_of(engine, app) == [f"{app}-web-v1"] and get(first.calls[0][0]) == "v1"

    ctx.settings.ready_timeout = 3
    with pytest.raises(DeployFailed, match=r"web\.1 did not answer HTTP within 3s \(it must listen on 0\.0\.0\.0"):
        sched.deploy(ctx, rel(app, 3, image, processes={"web": "sleep 1000"}), FakeRoute(), Out().progress)
    assert services_of(engine, app) == [f"{app}-web-v1"] and get(first.calls[0][0]) == "v1"
    assert [(i.release, i.state) for i in sched.instances(ctx, app)] == [(1, "running")]


def test_bad_input_fails_in_one_line_before_anything_starts(sched, ctx, app, image, engine, request):
    with pytest.raises(DeployFailed, match=r"^image pushdock/nope-[0-9a-f]+:v1 is not on this node's Docker engine"):
        sched.deploy(ctx, rel(app, 1, f"pushdock/nope-{secrets.token_hex(3)}:v1"), FakeRoute(), Out().progress)
    ctx.state.set("scheduler", GLOBAL, "max-per-node", "1")
    with pytest.raises(DeployFailed, match=r"^web=2 cannot be placed: at most 1 per node on 1 eligible node"):
        sched.deploy(ctx, rel(app, 1, image, formation={"web": 2}), FakeRoute(), Out().progress)
    with pytest.raises(DeployFailed, match=r"^v1 has no process type 'worker'"):
        sched.deploy(ctx, rel(app, 1, image, formation={"web": 1, "worker": 1}), FakeRoute(), Out().progress)
    server = f"127.0.0.1:{free_port()}"
    ctx.state.set("registry", GLOBAL, "server", server)
    request.addfinalizer(lambda: _remove_image(engine, f"{server}/pushdock/{app}:v1"))
    with pytest.raises(DeployFailed, match=r"^could not push 127\.0\.0\.1:\d+/pushdock/sw[0-9a-f]+:v1: "):
        sched.deploy(ctx, rel(app, 1, image), FakeRoute(), Out().progress)
    assert services_of(engine, app) == []


def test_routing_mesh_without_ipvs_fails_with_a_hint_and_keeps_the_old(sched, ctx, app, image, engine):
    """Where the mesh works (IPVS), the same path routes to every node at the service's mesh port."""
    first = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), first, Out().progress)
    ctx.state.set("scheduler", app, "routing-mesh", "on")
    with pytest.raises(DeployFailed, match=r"^v2 did not start: the routing mesh does not answer on port \d+ "
                                           r"\(it needs IPVS in the kernel\): turn it off with `scheduler:set APP"):
        sched.deploy(ctx, rel(app, 2, image), FakeRoute(), Out().progress)
    assert services_of(engine, app) == [f"{app}-web-v1"] and get(first.calls[0][0]) == "v1"


def test_run_attaches_stdio_and_returns_the_exit_status(ctx, app, image, engine):
    code = (
        "import sys; from pushdock.context import Context; from pushdock.settings import Settings; "
        "from pushdock.state import Release; from schedulers.swarm.scheduler import SwarmScheduler\n"
        f"ctx = Context(settings=Settings(data_dir={str(ctx.settings.data_dir)!r}))\n"
        f"r = Release(app={app!r}, number=1, image={image!r}, env={{'GREETING': 'hi'}}, processes={{}}, formation={{}})\n"
        "sys.exit(SwarmScheduler().run(ctx, r, ['sh', '-c', 'read x; echo $GREETING $x $DYNO; echo oops >&2; exit 3'],"
        " tty=False))\n"
    )
    import subprocess
    import sys

    cp = subprocess.run([sys.executable, "-c", code], input="there\n", capture_output=True, text=True, cwd=ROOT,
                        timeout=60)
    assert (cp.returncode, cp.stdout, cp.stderr.splitlines()[-1:]) == (3, "hi there run.1\n", ["oops"]), cp.stderr
    assert engine.containers.list(all=True, filters={"label": f"pushdock.app={app}"}) == []


def test_release_task_streams_output_and_fails_on_exit_status(sched, ctx, app, image, engine):
    out = Out()
    sched.run_task(ctx, rel(app, 1, image), "echo migrating $DYNO; echo to-stderr >&2", out.progress,
                   timeout=30, label="release")
    assert "       migrating release.1" in out.lines and "       to-stderr" in out.lines
    with pytest.raises(DeployFailed, match=r"^release command failed with exit status 4$"):
        sched.run_task(ctx, rel(app, 1, image), "exit 4", Out().progress, timeout=30, label="release")
    with pytest.raises(DeployFailed, match=r"^predeploy command did not finish within 1s$"):
        sched.run_task(ctx, rel(app, 1, image), "sleep 30", Out().progress, timeout=1, label="predeploy")
    assert services_of(engine, app) == []


def test_cron_job_runs_as_a_one_shot_service_with_its_exit_status(ctx, app, image, engine):
    """pushdock.cron on the swarm scheduler: the job's output lands in the cron log, its exit status is the
    task's, and the one-shot service is removed (docker-local's path runs in tests/e2e/test_cron.py)."""
    from pushdock import cron

    ctx = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"scheduler": "swarm"}))
    assert ctx.scheduler(app).name == "swarm"
    ctx.state.create_app(app)
    release = rel(app, 1, image).with_(cron=[{"command": "echo cron on $DYNO; exit 3", "schedule": "@daily"}])
    ctx.state.save_release(release)
    ctx.state.promote_release(release)
    [job] = cron.jobs(ctx, app)
    shown: list[str] = []
    assert cron.run(ctx, job, echo=shown.append) == 3
    assert shown == ["cron on cron.1"]
    assert list(cron.log_lines(ctx, app, follow=False, tail=5)) == [f"cron.{job.id}: cron on cron.1"]
    assert [r["status"] for r in cron.listing(ctx, app)] == [3]
    assert services_of(engine, app) == []


def test_logs_reconcile_and_stop(sched, ctx, app, image, engine):
    release = rel(app, 1, image, formation={"web": 1, "worker": 1}, processes={"web": "", "worker": WORKER})
    sched.deploy(ctx, release, FakeRoute(), Out().progress)
    # the engine copies a task's output into its log asynchronously: wait (bounded) for the first tick there
    deadline = time.monotonic() + 30
    while "worker.1: tick worker.1" not in (lines := list(sched.logs(ctx, app, follow=False, tail=None,
                                                                      process="worker"))):
        assert time.monotonic() < deadline, f"no tick of the worker in its log: {lines}"
        time.sleep(0.2)
    # a crashed worker (swarm replaces it), a lost service and a stray one of an older release:
    # reconcile restores the lost one, removes the stray, and takes the crash for history
    engine.containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=worker"]})[0].kill()
    engine.services.get(f"{app}-web-v1").remove()
    sw.create_service(ctx, rel(app, 0, image), "web", replicas=1, image=image, constraints=[], mesh=False,
                      max_per_node=None)
    route = FakeRoute()
    messages = sched.reconcile(ctx, release, route, Out().progress)
    assert messages == [f"created {app}-web-v1 (was missing)", f"removed stray service {app}-web-v0"]
    assert services_of(engine, app) == [f"{app}-web-v1", f"{app}-worker-v1"]
    assert route.answers == [["v1"]]
    # swarm replaces the killed task on its own clock (after its restart delay): wait (bounded) for the new one
    deadline = time.monotonic() + 60
    while (worker := next(i for i in sched.instances(ctx, app) if i.process == "worker")).state != "running":
        assert time.monotonic() < deadline, f"the worker was not replaced: {worker}"
        time.sleep(0.5)
    assert (worker.state, worker.restarts) == ("running", 1)
    sched.stop(ctx, app)
    assert services_of(engine, app) == []
    assert engine.containers.list(all=True, filters={"label": f"pushdock.app={app}"}) == []


def test_logs_follow_picks_up_new_services_and_ends_on_close(sched, ctx, app, image):
    release = rel(app, 1, image)
    first = FakeRoute()
    sched.deploy(ctx, release, first, Out().progress)
    got: list[str] = []
    seen_first, done = threading.Event(), threading.Event()

    def consume() -> None:
        gen = sched.logs(ctx, app, follow=True, tail=0, process="web")
        for line in gen:
            got.append(line)
            if "GET /live-1" in line:
                seen_first.set()
            if "GET /live-2" in line:
                break
        gen.close()
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    # tail=0: following has begun once one of the probes requested meanwhile comes through (a fixed wait would
    # request /live-1 before the follow is attached when the machine is slow, and it would never be delivered)
    deadline, probes = time.monotonic() + 30, 0
    while not got:
        assert time.monotonic() < deadline and not done.is_set(), f"follow delivered nothing: {got}"
        get(first.calls[0][0], f"/probe-{probes}")
        probes += 1
        time.sleep(0.3)
    get(first.calls[0][0], "/live-1")
    assert seen_first.wait(10), f"follow did not deliver the live line: {got}"
    route = FakeRoute()
    sched.restart_process(ctx, release, route, Out().progress, process="web")  # a new service: found on a rescan
    get(route.calls[0][0], "/live-2")
    assert done.wait(10), f"follow did not pick up the new service: {got}"
    assert [line for line in got if "/live-" in line] == ["web.1: GET /live-1", "web.1: GET /live-2"]
    deadline = time.monotonic() + 5
    while any(t.name.startswith("pushdock-logs-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "log reader threads still running after close()"
        time.sleep(0.1)


def test_image_streams_from_one_engine_into_another(image, engine):
    """save | load through the SDK. Only one engine exists here: it streams into itself."""
    swarm_images.stream_image(engine, engine, image)
    assert engine.images.get(image).tags


# -- check settings and app.json healthchecks (pushdock/checks.py), as docker-local honours them ---------------
# A web app whose every answer is HTTP 500: the default readiness never passes it.
ERROR_500 = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500); self.send_header("Content-Length", "6"); self.end_headers(); self.wfile.write(b"broken")
http.server.HTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
"""


def status_of(u: Upstream, timeout: float = 10) -> int:
    """The HTTP status the upstream answers, once it answers at all."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{u}/", timeout=3) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_checks_skip_routes_running_tasks_without_probing(sched, ctx, app, image, engine):
    ctx.settings.ready_timeout = 3
    broken = rel(app, 1, image, processes={"web": 'exec python3 -c "$SRC"'}, env={"SRC": ERROR_500})
    with pytest.raises(DeployFailed, match=r"^v1 did not start: web\.1 did not answer HTTP within 3s"):
        sched.deploy(ctx, broken, FakeRoute(), Out().progress)
    assert services_of(engine, app) == []

    ctx.state.create_app(app)
    ctx.state.set("checks", app, "skipped", "1")
    routed: list[list[Upstream]] = []
    out = Out()
    sched.deploy(ctx, broken, routed.append, out.progress)
    assert re.search(r"^       web\.1 ready on 127\.0\.0\.1:\d+ \(checks skipped\)$", out.text, re.M), out.text
    [[up]] = routed
    assert status_of(up) == 500 and services_of(engine, app) == [f"{app}-web-v1"]
    sched.restart_process(ctx, broken, routed.append, out.progress, process="web")  # ps:restart skips too
    assert len(routed) == 2 and routed[1] != routed[0] and status_of(routed[1][0]) == 500
    [name] = services_of(engine, app)
    assert name.startswith(f"{app}-web-v1-")


def test_checks_disabled_stops_the_old_service_first_and_restores_it_on_failure(sched, ctx, app, image, engine):
    first = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), first, Out().progress)
    ctx.state.create_app(app)
    ctx.state.set("checks", app, "disabled", "1")
    route, out = FakeRoute(), Out()
    # subscribed before the deploy: asked for afterwards, the engine answers from its last 256 events only (all
    # containers' and services'), which a busy engine may have turned over by then
    with EngineEvents({"type": ["container", "service"]}) as watch:
        sched.deploy(ctx, rel(app, 2, image), route, out.progress)
        events = watch.wait_for(lambda e: e["Type"] == "service" and e["Action"] == "create"
                                and e["Actor"]["Attributes"].get("name") == f"{app}-web-v2")
    assert "-----> Stopping 1 old service first (checks disabled: the app is down until v2 runs)" in out.lines
    assert route.answers == [["v2"]] and services_of(engine, app) == [f"{app}-web-v2"]
    died = [e["timeNano"] for e in events if e["Type"] == "container" and e["Action"] == "die"
            and e["Actor"]["Attributes"].get("pushdock.app") == app
            and e["Actor"]["Attributes"].get("pushdock.release") == "1"]
    made = [e["timeNano"] for e in events if e["Type"] == "service" and e["Action"] == "create"
            and e["Actor"]["Attributes"].get("name") == f"{app}-web-v2"]
    assert died and made and max(died) < min(made), "the old task must stop before the new service exists"

    # v3 crashes: the app is down, so the v2 service is scaled back and routed to again
    route, out = FakeRoute(), Out()
    with pytest.raises(DeployFailed, match=r"^v3 did not start: web\.1 exited with status 3$"):
        sched.deploy(ctx, rel(app, 3, image, processes={"web": "exit 3"}), route, out.progress)
    assert "-----> Stopping 1 old service first (checks disabled: the app is down until v3 runs)" in out.lines
    assert "-----> Starting the 1 old service again (checks disabled: the app is down until they run)" in out.lines
    assert "-----> Routing to the old release" in out.lines
    assert route.answers == [["v2"]] and services_of(engine, app) == [f"{app}-web-v2"]
    assert [(i.release, i.state, i.upstream) for i in sched.instances(ctx, app)] == [(2, "running", route.calls[0][0])]


def test_wait_to_retire_keeps_the_old_service_and_stop_timeout_is_the_grace_period(sched, ctx, app, image, engine):
    ctx.state.create_app(app)
    ctx.state.set("checks", app, "stop-timeout", "7")
    first = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), first, Out().progress)
    spec = engine.services.get(f"{app}-web-v1").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["StopGracePeriod"] == 7_000_000_000

    ctx.state.set("checks", app, "wait-to-retire", "2")
    seen: dict = {}

    def route(upstreams: list[Upstream]) -> None:  # returns at once; a second later, v1 must still serve
        def later() -> None:
            time.sleep(1)
            seen.update(services=services_of(engine, app), answer=get(first.calls[0][0]))
        seen.update(switched=time.monotonic(), thread=threading.Thread(target=later))
        seen["thread"].start()

    out = Out()
    sched.deploy(ctx, rel(app, 2, image), route, out.progress)
    retired = time.monotonic() - seen["switched"]
    seen["thread"].join()
    assert seen["services"] == [f"{app}-web-v1", f"{app}-web-v2"] and seen["answer"] == "v1"
    assert retired >= 2 and services_of(engine, app) == [f"{app}-web-v2"]
    assert "       Old services retire in 2s (wait-to-retire)" in out.lines


def test_app_json_healthchecks_gate_the_switch(sched, ctx, app, image, engine):
    first = FakeRoute()
    sched.deploy(ctx, rel(app, 1, image), first, Out().progress)
    check = Healthcheck(process="web", name="health", path="/env/MESSAGE", content="v9", attempts=2, timeout=2, wait=0.2)
    route, out = FakeRoute(), Out()
    with pytest.raises(DeployFailed, match=r"^v2 did not start: web\.1 failed check health: GET /env/MESSAGE "
                                           r"answered without 'v9' \(2 attempts\)$"):
        sched.deploy(ctx, rel(app, 2, image).with_(checks={"web": [check.to_dict()]}), route, out.progress)
    assert route.calls == [] and services_of(engine, app) == [f"{app}-web-v1"] and get(first.calls[0][0]) == "v1"

    files = Healthcheck(process="web", name="files", command=("test", "-f", "/app/server.py"), attempts=1)
    up = Healthcheck(process="worker", name="up", uptime=1, attempts=1)
    good = {"web": [dataclasses.replace(check, content="v2").to_dict(), files.to_dict()], "worker": [up.to_dict()]}
    release = rel(app, 2, image, formation={"web": 1, "worker": 1}, processes={"web": "", "worker": WORKER})
    out = Out()
    sched.deploy(ctx, release.with_(checks=good), FakeRoute(), out.progress)
    assert re.search(r"^       web\.1 ready on \S+ \(check health passed; check files passed\)$", out.text, re.M)
    assert "       worker.1 ready (check up passed)" in out.lines, out.lines
    assert services_of(engine, app) == [f"{app}-web-v2", f"{app}-worker-v2"]


def test_healthchecks_on_a_task_of_another_node(ctx, app, image, engine):
    """This node posing as another one (not local): without its engine's address the command check is skipped
    and said so, path and uptime checks run through the manager; with its engine's address the command runs."""
    checks = (Healthcheck(process="web", name="health", path="/env/MESSAGE", content="v1", attempts=2, wait=0.2),
              Healthcheck(process="web", name="files", command=("test", "-f", "/nope"), attempts=1),
              Healthcheck(process="web", name="up", uptime=1, attempts=1))
    release = rel(app, 1, image)
    service = sw.create_service(ctx, release, "web", replicas=1, image=image, constraints=[], mesh=False,
                                max_per_node=None)
    [here] = [n for n in sn.nodes(ctx) if n.local]
    seen: list[str] = []
    remote = dataclasses.replace(here, local=False, hostname="elsewhere", engine=None)
    [up] = wait_ready(ctx, release, [NewService("web", service, 1, checks)], {here.id: remote}, mesh=False,
                      on_ready=seen.append)
    assert get(up) == "v1"
    assert seen == [f"web.1 ready on {up} (check health passed; check up passed; command check files skipped: web.1 "
                    "runs on node elsewhere, whose engine pushdock cannot reach (`swarm:set NODE engine URL`))"]
    engine_url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    reachable = dataclasses.replace(remote, engine=engine_url)
    with pytest.raises(NotReady, match=r"^web\.1 failed check files: command exited with status 1 \(1 attempt\)$"):
        wait_ready(ctx, release, [NewService("web", service, 1, checks)], {here.id: reachable}, mesh=False)


# -- images through a registry ---------------------------------------------------------------------------
class _Registry(BaseHTTPRequestHandler):
    """The Registry HTTP API v2 routes `docker push` and a pull by digest use, in memory."""

    protocol_version = "HTTP/1.1"
    blobs: dict[str, bytes] = {}
    manifests: dict[str, tuple[str, bytes]] = {}
    uploads: dict[str, bytes] = {}

    def _reply(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/v2/":
            return self._reply(200, b"{}")
        if "/manifests/" in path:
            ref = path.rsplit("/", 1)[1]
            found = self.manifests.get(ref) or next((m for m in self.manifests.values()
                                                     if "sha256:" + hashlib.sha256(m[1]).hexdigest() == ref), None)
            if found is None:
                return self._reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')
            digest = "sha256:" + hashlib.sha256(found[1]).hexdigest()
            return self._reply(200, found[1], Content_Type=found[0], Docker_Content_Digest=digest)
        digest = path.rsplit("/", 1)[1]
        if digest in self.blobs:
            return self._reply(200, self.blobs[digest], Docker_Content_Digest=digest)
        return self._reply(404, b'{"errors": [{"code": "BLOB_UNKNOWN"}]}')

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._body()
        name = urlsplit(self.path).path[len("/v2/"):].split("/blobs/")[0]
        uid = secrets.token_hex(8)
        self.uploads[uid] = b""
        self._reply(202, Location=f"/v2/{name}/blobs/uploads/{uid}", Docker_Upload_UUID=uid, Range="0-0")

    def do_PATCH(self) -> None:
        path = urlsplit(self.path).path
        uid = path.rsplit("/", 1)[1]
        self.uploads[uid] += self._body()
        self._reply(202, Location=path, Docker_Upload_UUID=uid, Range=f"0-{max(0, len(self.uploads[uid]) - 1)}")

    def do_PUT(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if "/manifests/" in url.path:
            self.manifests[url.path.rsplit("/", 1)[1]] = (self.headers.get("Content-Type", ""), body)
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            return self._reply(201, Location=url.path, Docker_Content_Digest=digest)
        uid = url.path.rsplit("/", 1)[1]
        digest = parse_qs(url.query)["digest"][0]
        self.blobs[digest] = self.uploads.pop(uid) + body
        self._reply(201, Location=f"/v2/x/blobs/{digest}", Docker_Content_Digest=digest)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry():
    srv = ThreadingHTTPServer(("127.0.0.1", free_port()), _Registry)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def tiny_image(engine, tmp_path: Path, swarm_mode):
    """FROM scratch + the host's static busybox: a 1 MB web app, so a push is quick."""
    (tmp_path / "ctx").mkdir()
    shutil.copy("/bin/busybox", tmp_path / "ctx" / "busybox")
    (tmp_path / "ctx" / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'RUN mkdir /www && echo from-the-registry > /www/index.html\nCMD ["httpd", "-f", "-p", "5000", "-h", "/www"]\n')
    tag = f"pushdock-test-tiny:{secrets.token_hex(4)}"
    engine.images.build(path=str(tmp_path / "ctx"), tag=tag, rm=True, forcerm=True)
    yield tag
    engine.images.remove(tag, force=True)


def test_with_a_registry_releases_are_pushed_and_services_pull_them_by_digest(sched, ctx, app, tiny_image, engine,
                                                                               registry, request):
    """The registry is an in-memory fake of the Registry API (none is reachable here); the engine's own push
    talks to it. Other nodes would pull by that digest; this one has the image and need not."""
    ctx.state.set("registry", GLOBAL, "server", registry)
    out = Out()
    seen: list[str] = []
    name = f"{registry}/pushdock/{app}:v1"
    request.addfinalizer(lambda: _remove_image(engine, name))
    sched.deploy(ctx, rel(app, 1, tiny_image), lambda ups: seen.extend(get(u, "/") for u in ups), out.progress)
    assert f"-----> Pushing {name}" in out.lines and seen == ["from-the-registry"]
    image = engine.services.get(f"{app}-web-v1").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert image.startswith(f"{name}@sha256:") and "v1" in _Registry.manifests
    manifest = json.loads(_Registry.manifests["v1"][1])
    assert "sha256:" + hashlib.sha256(_Registry.manifests["v1"][1]).hexdigest() == image.split("@")[1]
    assert all(layer["digest"] in _Registry.blobs for layer in manifest["layers"])


def _remove_image(engine: docker.DockerClient, name: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.remove(name, force=True)


# -- pushes through `pushdock serve` ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory, engine, swarm_mode):
    srv = Server(tmp_path_factory.mktemp("swarm"), PUSHDOCK_SCHEDULER="swarm").start()
    srv.add_key()
    yield srv
    remove_services(engine, srv.data)
    srv.stop()


def web_tasks(server: Server, app: str) -> list[str]:
    rows = json.loads(server.cli("ps:report", app, "--format", "json").stdout)
    return sorted(f"{r['process']} {r['release']} {r['state']}" for r in rows)


def test_push_scale_redeploy_under_load_rollback_and_failed_checks(server, engine):
    app = unique("swarm")
    work = server.app_repo(app)
    t0 = time.monotonic()
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    print(f"\nfirst push to live on swarm: {time.monotonic() - t0:.2f}s")
    assert f"remote: -----> Starting web (1) of v1 as service {app}-web-v1" in res.stderr
    assert server.get(app) == (200, "hello from pushdock")
    first = server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()

    t0 = time.monotonic()
    server.cli("ps:scale", app, "web=3")
    print(f"scale 1->3: {time.monotonic() - t0:.2f}s")
    assert web_tasks(server, app) == ["web.1 v2 running", "web.2 v2 running", "web.3 v2 running"]
    assert services_of(engine, app) == [f"{app}-web-v2"]

    server.commit(work, "v3", {"body.txt": "second body\n"})
    with server.load(app, threads=2, max_seconds=60) as load:
        time.sleep(1.0)
        t0 = time.monotonic()
        res = server.push(work, app)
        took = time.monotonic() - t0
        time.sleep(1.0)
    assert res.returncode == 0, res.stderr
    r = load.result
    print(f"redeploy under load: push {took:.2f}s, {r.requests} requests, {r.failed} failed, {dict(r.bodies)}")
    assert r.failed == 0, r.errors
    assert r.bodies["second body"] > 0 and r.bodies["hello from pushdock"] > 0, r.bodies
    assert services_of(engine, app) == [f"{app}-web-v3"]

    if "releases:rollback" in server.cli("help").stdout:
        server.cli("releases:rollback", app, "v2")
    else:  # not there yet: redeploying the older commit is the same swap
        res = server.push(work, app, f"{first}:refs/heads/main", "--force")
        assert res.returncode == 0, res.stderr
    assert server.get(app) == (200, "hello from pushdock")
    assert len(web_tasks(server, app)) == 3

    bad = server.cli("config:set", app, "FAIL_AT_BOOT=1", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("error: v5 did not start: web.") and bad.stderr.count("\n") == 1
    assert server.get(app) == (200, "hello from pushdock")
    assert [s for s in services_of(engine, app) if "-v5" in s] == []

    logs = server.cli("logs", app, "-n", "50").stdout
    assert "web.1: GET /" in logs
    server.cli("ps:stop", app)
    assert services_of(engine, app) == [] and server.get(app)[0] == 503
    server.cli("ps:start", app)
    assert server.get(app) == (200, "hello from pushdock") and len(services_of(engine, app)) == 1
    server.cli("apps:destroy", app, "--force")
    assert services_of(engine, app) == []


def task_containers(engine: docker.DockerClient, app: str, process: str, release: int) -> set[str]:
    """Running task containers of one process of one release (those of a retired service may still be stopping)."""
    labels = [f"pushdock.app={app}", f"pushdock.process={process}", f"pushdock.release={release}"]
    return {c.id for c in engine.containers.list(filters={"label": labels})}


def test_ps_restart_web_replaces_its_tasks_under_load(server, engine):
    app = unique("swrs")
    work = server.app_repo(app, body="restart body")
    server.commit(work, "worker", {"Procfile": "web: python3 -u /app/server.py\nworker: " + WORKER + "\n"})
    assert server.push(work, app).returncode == 0
    server.cli("ps:scale", app, "web=2", "worker=1")
    webs, workers = task_containers(engine, app, "web", 2), task_containers(engine, app, "worker", 2)
    assert len(webs) == 2 and len(workers) == 1 and server.get(app) == (200, "restart body")

    with server.load(app, threads=2, max_seconds=60) as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        out = server.cli("ps:restart", app, "web").stdout
        took = time.monotonic() - t0
        time.sleep(0.5)
    r = load.result
    print(f"\nswarm ps:restart web=2 under load: {took:.2f}s, {r.requests} requests, {r.failed} failed")
    assert r.failed == 0, r.errors
    assert r.requests > 20 and set(r.bodies) == {"restart body"}
    assert "Routing to v2" in out
    after = services_of(engine, app)
    [web] = [n for n in after if n.startswith(f"{app}-web-v2-")]
    assert f"{app}-worker-v2" in after and f"{app}-web-v2" not in after
    new = {c.id for c in engine.containers.list(filters={"label": f"com.docker.swarm.service.name={web}"})}
    assert len(new) == 2 and new.isdisjoint(webs), "every web task is new"
    assert task_containers(engine, app, "worker", 2) == workers, "the worker is left alone"
    deadline = time.monotonic() + 15  # the old tasks got SIGTERM: they stop within the grace period
    while task_containers(engine, app, "web", 2) != new and time.monotonic() < deadline:
        time.sleep(0.2)
    assert task_containers(engine, app, "web", 2) == new
    assert server.get(app) == (200, "restart body")
    rows = json.loads(server.cli("ps:report", app, "--format", "json").stdout)
    assert sorted((r["process"], r["state"]) for r in rows) == [
        ("web.1", "running"), ("web.2", "running"), ("worker.1", "running")]
    server.cli("apps:destroy", app, "--force")
    assert services_of(engine, app) == []


def test_scheduler_switch_moves_a_running_app_without_dropping_requests(server, engine):
    app = unique("move")
    work = server.app_repo(app)
    server.cli("apps:create", app)
    server.cli("scheduler:set", app, "selected", "docker-local")
    assert server.push(work, app).returncode == 0
    assert services_of(engine, app) == []
    with server.load(app, threads=2, max_seconds=60) as load:
        time.sleep(0.5)
        out = server.cli("scheduler:set", app, "selected", "swarm").stdout
        time.sleep(0.5)
    assert "moved to the swarm scheduler" in out
    assert load.result.failed == 0, load.result.errors
    assert services_of(engine, app) == [f"{app}-web-v1"]
    plain = [c for c in engine.containers.list(all=True, filters={"label": f"pushdock.app={app}"})
             if "com.docker.swarm.service.id" not in c.labels]
    assert plain == []
    with server.load(app, threads=2, max_seconds=60) as load:
        time.sleep(0.5)
        server.cli("scheduler:set", app, "selected", "docker-local")
        time.sleep(0.5)
    assert load.result.failed == 0, load.result.errors
    assert services_of(engine, app) == []
    assert server.get(app) == (200, "hello from pushdock")
    bad = server.cli("scheduler:set", app, "selected", "nomad", check=False)
    assert bad.returncode == 2 and bad.stderr == "error: unknown scheduler 'nomad' (known: docker-local, swarm)\n"
    server.cli("apps:destroy", app, "--force")


def test_a_task_swarm_replaces_is_followed_by_the_proxy(server, engine):
    """Swarm replaces a killed task by itself and the new task publishes a new host port: `serve` notices
    (woken by the engine's events) and re-routes the app without a deploy."""
    app = unique("follow")
    res = server.push(server.app_repo(app, body="followed"), app)
    assert res.returncode == 0, res.stderr
    [old] = engine.containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})
    old_port = old.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
    old.kill()
    old.wait(timeout=30)  # dead: from here on only a new task can answer
    t0 = time.monotonic()
    # serve logs the re-route once the proxy switched: nginx's old workers, which still route to the dead
    # port for ~100 ms after a reload, have exited by then (proxies/nginx.py).
    while "re-routed: its instances moved" not in (server.base / "serve.log").read_text():
        assert time.monotonic() - t0 < 60, "serve did not re-route"
        time.sleep(0.2)
    took = time.monotonic() - t0
    assert [server.get(app) for _ in range(20)] == [(200, "followed")] * 20
    [new] = engine.containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})
    assert new.id != old.id
    new_port = new.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
    print(f"\ntask replaced (port {old_port} -> {new_port}), served again after {took:.1f}s")


def test_check_settings_and_app_json_healthchecks_through_a_push(server, engine):
    app = unique("swck")
    work = server.app_repo(app, body="checked body")
    check = {"name": "body", "path": "/", "content": "checked", "attempts": 2, "wait": 0.5}
    server.commit(work, "app.json", {"app.json": json.dumps({"healthchecks": {"web": [check]}})})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "check body passed" in res.stderr and server.get(app) == (200, "checked body")

    # a check the new code fails rejects the push; v1 keeps serving through nginx
    server.commit(work, "bad check", {"app.json": json.dumps({"healthchecks": {"web": [dict(check, path="/ready")]}}),
                                      "body.txt": "plain body\n"})
    res = server.push(work, app)
    assert res.returncode != 0
    assert "failed check body: GET /ready answered without 'checked' (2 attempts)" in res.stderr, res.stderr
    assert server.get(app) == (200, "checked body") and services_of(engine, app) == [f"{app}-web-v1"]

    server.ssh("checks:skip", app)
    server.ssh("checks:set", app, "wait-to-retire", "1")
    out = server.cli("ps:restart", app).stdout
    assert "(checks skipped)" in out and "retire in 1s" in out
    server.ssh("checks:enable", app)
    server.ssh("checks:disable", app)
    server.ssh("checks:set", app, "wait-to-retire")
    out = server.cli("config:set", app, "X=1").stdout
    assert "(checks disabled: the app is down until v" in out
    assert server.get(app) == (200, "checked body")
    server.cli("apps:destroy", app, "--force")
    assert services_of(engine, app) == []


def test_a_pushed_app_keeps_the_file_it_wrote_to_a_storage_mount(server, engine):
    """The storage test app (uid 32767) on swarm: the release task and the web task see the mount; the file
    survives a redeploy (a new service) and `run` reads it."""
    app, name = unique("swst"), unique("d")
    host = server.data / "storage" / name
    server.cli("apps:create", app)
    server.ssh("storage:ensure-directory", name)
    server.ssh("storage:mount", app, f"{name}:/data")
    work = server.app_repo(app, sample="storage-web")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert (host / "release.log").read_text() == "release v1 as 32767\n"
    assert server.get(app, "/write/note?on%20swarm") == (200, "written")
    assert (host / "note").read_text() == "on swarm\n"
    server.commit(work, "redeploy", {"body.txt": "again\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert services_of(engine, app) == [f"{app}-web-v2"]
    assert server.get(app) == (200, "again") and server.get(app, "/read/note") == (200, "on swarm")
    assert server.ssh("run", app, "cat", "/data/note").stdout == "on swarm\n"
    server.cli("apps:destroy", app, "--force")
    assert (host / "note").exists()

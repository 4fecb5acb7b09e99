"""The swarm scheduler on two real engines: this host's (the manager) and a second dockerd in its own network
namespace (the worker, scripts/swarm-node.sh), release images through Debian's docker-registry (TLS).

Nothing is faked: real `pushdock serve` with its nginx, real pushes, real engines; the worker's address
(10.231.N.2) is what the proxy dials for its tasks. The module changes the host engine's swarm state (it turns
swarm mode on with the veth address and off again), so it runs alone: marker `multinode`, make test's own pass.
Figures (drain, recovery after losing the worker) are printed, not asserted; bench/swarm.py records them.
"""

from __future__ import annotations

import json
import time

import pytest

from pushdock.context import Context
from pushdock.settings import Settings
from tests.harness import Server, unique
from tests.multinode import Cluster, two_nodes

pytestmark = [pytest.mark.docker, pytest.mark.multinode]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with two_nodes(tmp_path_factory.mktemp("multinode")) as c:
        yield c


@pytest.fixture(scope="module")
def server(tmp_path_factory, cluster: Cluster):
    srv = Server(tmp_path_factory.mktemp("mnserve"), PUSHDOCK_SCHEDULER="swarm").start()
    srv.add_key()
    srv.cli("swarm:registry", "set", cluster.registry)
    yield srv
    for s in cluster.manager.services.list(filters={"label": f"pushdock.data-dir={srv.data.absolute()}"}):
        s.remove()
    srv.stop()


@pytest.fixture(scope="module")
def app(server: Server):
    """An app with web=2, deployed once (through the registry)."""
    name = unique("mn")
    res = server.push(server.app_repo(name), name)
    assert res.returncode == 0, res.stderr
    server.cli("ps:scale", name, "web=2")
    return name


def routed(server: Server, app: str) -> list[str]:
    ctx = Context(settings=Settings(data_dir=server.data))
    return sorted(f"{u.host}:{u.port}" for u in ctx.proxy().routes(ctx)[app].upstreams)


def nodes(server: Server) -> dict[str, dict]:
    return {r["hostname"]: r for r in json.loads(server.cli("swarm:nodes", "--format", "json").stdout)}


def web_hosts(server: Server, app: str) -> list[str]:
    return sorted(h.rsplit(":", 1)[0] for h in routed(server, app))


def wait(what, timeout: float = 120.0, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(every)


def test_web_spreads_over_both_nodes_pulled_by_digest_from_the_registry(server, cluster, app):
    worker = cluster.worker
    assert web_hosts(server, app) == sorted(["127.0.0.1", worker.addr]), "one task per node, each routed"
    assert sorted(v["tasks"] for v in nodes(server).values()) == [1, 1]
    [web] = [s for s in cluster.manager.services.list(filters={"label": f"pushdock.app={app}"})
             if s.attrs["Spec"]["Labels"]["pushdock.process"] == "web"]
    image = web.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert image.startswith(f"{cluster.registry}/pushdock/{app}:v") and "@sha256:" in image
    digest = image.split("@", 1)[1]
    pulled = [d for i in worker.engine().images.list() for d in i.attrs.get("RepoDigests") or []]
    assert f"{cluster.registry}/pushdock/{app}@{digest}" in pulled, "the worker pulled the pushed digest"
    for _ in range(20):
        assert server.get(app)[0] == 200


def test_nodes_and_join_token(server, cluster):
    rows = nodes(server)
    worker = rows[f"pd-{cluster.worker.name}"]
    assert (worker["role"], worker["state"], worker["availability"], worker["address"]) == \
        ("worker", "ready", "active", cluster.worker.addr)
    out = server.cli("swarm:join-token").stdout.strip()
    assert out.startswith("docker swarm join --token SWMTKN-") and out.endswith(":" + out.rsplit(":", 1)[1])
    assert server.cli("swarm:join-token", "-q").stdout.strip().startswith("SWMTKN-")
    bad = server.cli("swarm:drain", "no-such-node", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: 'no-such-node' is not a node of this swarm")
    assert bad.stderr.count("\n") == 1


def test_drain_under_load_moves_tasks_without_a_failed_request(server, cluster, app):
    name = f"pd-{cluster.worker.name}"
    assert cluster.worker.addr in web_hosts(server, app)
    t0 = time.monotonic()
    with server.load(app, threads=2, max_seconds=120) as load:
        time.sleep(1)
        res = server.cli("swarm:drain", name)
        time.sleep(1)
    took = time.monotonic() - t0 - 2
    assert load.result.failed == 0, load.result.errors
    assert load.result.requests > 100
    assert web_hosts(server, app) == ["127.0.0.1", "127.0.0.1"]
    assert f"moved {app}" in res.stdout and res.stderr == ""
    assert nodes(server)[name]["availability"] == "drain" and nodes(server)[name]["tasks"] == 0
    print(f"\nswarm:drain of the worker under load: {took:.1f}s, {load.result.requests} requests, 0 failed")

    server.cli("swarm:activate", name)
    assert nodes(server)[name]["availability"] == "active"
    server.cli("ps:restart", app)
    assert web_hosts(server, app) == sorted(["127.0.0.1", cluster.worker.addr]), "spread again"


def test_constraints_per_process_type(server, cluster, app):
    bad = server.cli("scheduler-swarm:set", app, "constraints", "web", "node.role=worker", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("error: a constraint must look like")
    server.cli("scheduler-swarm:set", app, "constraints", "web", "node.role==worker")
    server.cli("ps:restart", app)
    assert web_hosts(server, app) == [cluster.worker.addr] * 2
    assert "node.role==worker" in server.cli("scheduler-swarm:report", app).stdout
    # draining the only node the app may run on: the app cannot move, so nothing changes (one line, node active)
    name = f"pd-{cluster.worker.name}"
    bad = server.cli("swarm:drain", name, check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "cannot be placed" in bad.stderr, bad.stderr
    assert nodes(server)[name]["availability"] == "active"
    assert web_hosts(server, app) == [cluster.worker.addr] * 2 and server.get(app)[0] == 200
    server.cli("scheduler-swarm:set", app, "constraints", "web")
    server.cli("ps:restart", app)
    assert web_hosts(server, app) == sorted(["127.0.0.1", cluster.worker.addr])


def test_losing_the_workers_engine_reschedules_and_reroutes_and_a_push_still_deploys(server, cluster, app):
    worker = cluster.worker
    assert worker.addr in web_hosts(server, app)
    with server.load(app, threads=2, max_seconds=300) as load:
        time.sleep(1)
        t0 = time.monotonic()
        worker.stop_engine()
        stopped = time.monotonic() - t0
        wait(lambda: nodes(server)[f"pd-{worker.name}"]["state"] == "down", every=0.2)
        down = time.monotonic() - t0
        wait(lambda: web_hosts(server, app) == ["127.0.0.1", "127.0.0.1"], every=0.05)
        rerouted = time.monotonic() - t0
        time.sleep(1)
    print(f"\nworker engine stopped in {stopped:.1f}s; node down after {down:.1f}s; both web tasks on the manager "
          f"and routed {rerouted:.1f}s after the stop; {load.result.failed} of {load.result.requests} requests "
          f"failed meanwhile ({dict(load.result.errors)})")
    assert server.get(app)[0] == 200

    # a push while the node is down still deploys (tasks go to the nodes that are up)
    work = server.app_repo(app + "b", body="pushed while a node is down")
    res = server.push(work, app, "main", "--force")
    assert res.returncode == 0, res.stderr
    assert web_hosts(server, app) == ["127.0.0.1", "127.0.0.1"]
    assert server.get(app) == (200, "pushed while a node is down")

    worker.start_engine()
    wait(lambda: nodes(server)[f"pd-{worker.name}"]["state"] == "ready", every=0.5)
    server.cli("ps:restart", app)
    assert web_hosts(server, app) == sorted(["127.0.0.1", worker.addr])

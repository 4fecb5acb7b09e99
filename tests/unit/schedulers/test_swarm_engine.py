"""Swarm records as pushdock reads them: names, env, ports, task failures, addresses, IPVS detection.

Task and node records are copied from a real 20.10 engine (single node) and extended to several
nodes, which this machine cannot run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pushdock.routing import Upstream
from pushdock.state import Release
from schedulers.swarm import engine as sw
from schedulers.swarm import logs as swarm_logs
from schedulers.swarm import nodes as sn
from schedulers.swarm import settings as props

LOCAL = sn.Node(id="n1", hostname="vm", role="manager", state="ready", availability="active", addr="127.0.0.1",
                address="127.0.0.1", engine=None, local=True)
REMOTE = sn.Node(id="n2", hostname="worker-a", role="worker", state="ready", availability="active",
                 addr="10.0.0.7", address="10.0.0.7", engine=None, local=False)
BY_NODE = {"n1": LOCAL, "n2": REMOTE}


def task(state: str, *, node: str = "n1", desired: str = "running", err: str | None = None, code: int | None = None,
         port: int | None = None, slot: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Message": "started"}
    if err:
        status["Err"] = err
    if code is not None:
        status["ContainerStatus"] = {"ContainerID": "c" * 64, "PID": 0, "ExitCode": code}
    if port:
        ports = {"Protocol": "tcp", "TargetPort": 5000, "PublishedPort": port, "PublishMode": "host"}
        status["PortStatus"] = {"Ports": [ports, dict(ports)]}  # the engine lists IPv4 and IPv6 alike
    return {"ID": f"t{slot}{state}", "ServiceID": "s1", "Slot": slot, "NodeID": node, "DesiredState": desired,
            "Status": status, "CreatedAt": "2026-11-26T20:35:25.2Z"}


def release(**kw: Any) -> Release:
    return Release(app="shop", number=7, image="pushdock/shop:v7", env={"A": "1"}, processes={"web": ""},
                   formation={"web": 2}, **kw)


def test_service_names_are_dns_labels_even_for_long_apps():
    assert sw.service_name("shop", "web", 3) == "shop-web-v3"
    assert sw.service_name("shop", "web", 3, "a1b2") == "shop-web-v3-a1b2"
    long = "a" * 63
    name = sw.service_name(long, "worker", 12, "beef")
    assert len(name) == 63 and name.endswith("-worker-v12-beef")
    assert name != sw.service_name("a" * 62 + "b", "worker", 12, "beef")  # the hash keeps them apart


def test_env_has_port_and_a_slot_template_for_dyno():
    env = dict(e.split("=", 1) for e in sw.service_env(release(), "web"))
    assert env["PORT"] == "5000" and env["A"] == "1" and env["PUSHDOCK_RELEASE"] == "v7"
    assert env["DYNO"] == "web.{{.Task.Slot}}"  # swarm expands it per task: web.1, web.2


def test_web_publishes_in_host_mode_and_through_the_mesh_when_asked():
    assert sw.endpoint_ports(5000, web=False, mesh=True) == []
    assert sw.endpoint_ports(5000, web=True, mesh=False) == [
        {"Protocol": "tcp", "TargetPort": 5000, "PublishMode": "host"}]
    assert [p["PublishMode"] for p in sw.endpoint_ports(8080, web=True, mesh=True)] == ["host", "ingress"]


def test_task_failures_are_one_line_and_name_the_node_when_there_are_several():
    assert sw.failure_of(task("running"), BY_NODE) is None
    assert sw.failure_of(task("failed", err="task: non-zero exit (3)", code=3), {"n1": LOCAL}) == \
        "exited with status 3"
    rejected = sw.failure_of(task("rejected", node="n2", err="No such image: pushdock/shop:v7"), BY_NODE)
    assert rejected is not None and rejected.startswith("was rejected: No such image: pushdock/shop:v7 (")
    assert "registry:set --global server HOST" in rejected and rejected.endswith("on node worker-a")
    assert "\n" not in rejected
    assert sw.failure_of(task("complete", code=0), {"n1": LOCAL}) == "exited with status 0"


def test_unplaceable_tasks_are_reported_with_the_schedulers_words():
    t = task("pending", err="no suitable node (max replicas per node limit exceed)")
    assert sw.pending_problem(t) == "no suitable node (max replicas per node limit exceed)"
    assert sw.pending_problem(task("pending")) is None
    assert sw.pending_problem(task("running")) is None


def test_task_addresses_use_the_nodes_address():
    assert sw.task_upstream(task("running", port=32768), BY_NODE) == Upstream("127.0.0.1", 32768)
    assert sw.task_upstream(task("running", node="n2", port=32770), BY_NODE) == Upstream("10.0.0.7", 32770)
    assert sw.task_upstream(task("running"), BY_NODE) is None
    assert sw.task_upstream(task("running", node="gone", port=1), BY_NODE) is None


class FakeService:
    def __init__(self, mesh_port: int | None = None) -> None:
        self.id, self.name = "s1", "shop-web-v7"
        ports = [{"Protocol": "tcp", "TargetPort": 5000, "PublishMode": "host"}]
        if mesh_port:
            ports.append({"Protocol": "tcp", "TargetPort": 5000, "PublishedPort": mesh_port, "PublishMode": "ingress"})
        self.attrs = {"Spec": {"Labels": {"pushdock.app": "shop", "pushdock.process": "web", "pushdock.release": "7"},
                               "Mode": {"Replicated": {"Replicas": 2}}},
                      "Endpoint": {"Ports": ports}}


def test_instances_from_tasks_host_mode_and_mesh():
    i = sw.instance_of(FakeService(), task("running", node="n2", port=32770, slot=2), BY_NODE, restarts=1)
    assert (i.app, i.process, i.index, i.release, i.state, i.restarts) == ("shop", "web", 2, 7, "running", 1)
    assert i.name == "shop-web-v7.2" and i.upstream == Upstream("10.0.0.7", 32770)
    meshed = sw.instance_of(FakeService(mesh_port=30001), task("running", node="n2", port=32770), BY_NODE, 0)
    assert meshed.upstream == Upstream("10.0.0.7", 30001)
    assert sw.mesh_port(FakeService(mesh_port=30001)) == 30001 and sw.replicas_of(FakeService()) == 2


def test_ipvs_detection_reads_proc_sys_and_the_module_lists(tmp_path: Path):
    assert props.kernel_has_ipvs(tmp_path) is False
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/ip_vs").write_text("")
    assert props.kernel_has_ipvs(tmp_path) is True
    other = tmp_path / "other"
    modules = other / "lib/modules" / os.uname().release
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text("kernel/net/netfilter/ipvs/ip_vs.ko: kernel/lib/libcrc32c.ko\n")
    assert props.kernel_has_ipvs(other) is True


def test_this_kernel_has_no_ipvs_as_research_found():
    """research/proxies.md §5: no CONFIG_IP_VS here, hence no routing mesh."""
    assert props.kernel_has_ipvs() is False


def test_service_log_lines_are_parsed_whatever_their_chunking():
    raw = [b"2026-11-26T20:35:25.741196973Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,",
           b"com.docker.swarm.task.id=t1 hello web.2\n2026-11-26T20:35:25.7Z com.docker.swarm.task.id=t2 a b\n"]
    lines = list(swarm_logs.raw_lines(raw))
    assert len(lines) == 2
    key, task_id, text = swarm_logs.parse(lines[0])
    assert (key, task_id, text) == ("2026-11-26T20:35:25.741196973", "t1", "hello web.2")
    key2, task2, text2 = swarm_logs.parse(lines[1])
    assert (key2, task2, text2) == ("2026-11-26T20:35:25.700000000", "t2", "a b") and key2 < key

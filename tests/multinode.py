"""A real two-node swarm on this machine, for tests and benchmarks marked `multinode`.

The manager is this host's Docker engine (where pushdock runs, as in production). The worker is a second
`dockerd` started by scripts/swarm-node.sh in a network namespace of its own, joined to the host by a veth pair:
the host side (10.231.N.1) is the manager's advertise address, the node side (10.231.N.2) the worker's. Release
images reach the worker through a registry: Debian's `docker-registry`, served with TLS on the host side of the
veth, its CA trusted by both engines for that address only (/etc/docker/certs.d/ADDR:PORT/ca.crt).

The host engine is shared: swarm mode is turned on here only if it is off, with this block's addresses, and
turned off again afterwards (as harness.swarm_mode does). If another module's single-node swarm is active
(advertised on 127.0.0.1, which the worker cannot reach) this waits for it to end, then fails: `make test` runs
the multinode tests in a pass of their own.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from tests.harness import ROOT, free_port

SCRIPT = ROOT / "scripts" / "swarm-node.sh"
CERTS_D = Path("/etc/docker/certs.d")


@dataclass
class Worker:
    name: str
    index: int
    addr: str  # the node's address: what it advertises, where its host-mode ports answer
    host_addr: str  # the host's side of the veth pair: the manager's advertise address
    node_id: str = ""

    @property
    def socket(self) -> str:
        return f"unix:///run/pd-{self.name}/docker.sock"

    def engine(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.socket, timeout=120)

    def script(self, verb: str) -> str:
        res = subprocess.run([str(SCRIPT), verb, self.name, str(self.index)], capture_output=True, text=True,
                             timeout=180)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def stop_engine(self) -> None:
        """Stop the worker's dockerd (SIGTERM, as `systemctl stop docker` would); its network stays."""
        self.script("engine-stop")

    def start_engine(self) -> None:
        self.script("start")


@dataclass
class Cluster:
    manager: docker.DockerClient
    worker: Worker
    registry: str  # HOST:PORT, TLS, trusted by both engines

    def tasks_by_node(self, service_label: str) -> dict[str, int]:
        """Running tasks per node hostname-or-id of the services with this label."""
        found: dict[str, int] = {}
        for s in self.manager.services.list(filters={"label": service_label}):
            for t in s.tasks(filters={"desired-state": "running"}):
                if t["Status"]["State"] == "running":
                    node = "worker" if t["NodeID"] == self.worker.node_id else "manager"
                    found[node] = found.get(node, 0) + 1
        return found


def _wait_swarm_inactive(engine: docker.DockerClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while engine.info()["Swarm"]["LocalNodeState"] != "inactive":
        assert time.monotonic() < deadline, (
            "the host engine is in a swarm this module did not make (another module's, advertised on an address "
            "the worker cannot reach): run the multinode tests alone (`pytest -m multinode`, as make test does)")
        time.sleep(2)


@contextlib.contextmanager
def registry(host_addr: str, base: Path) -> Iterator[str]:
    """Debian's docker-registry with TLS on host_addr:PORT (its CA trusted by the engines for that address)."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    assert Path(binary).exists(), "docker-registry is not installed: run scripts/setup.sh"
    port = free_port()
    where = f"{host_addr}:{port}"
    base.mkdir(parents=True, exist_ok=True)
    cert, key = base / "registry.crt", base / "registry.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=pushdock-test-registry", "-addext", f"subjectAltName=IP:{host_addr}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    (base / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{base / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: {where}\n  tls:\n"
        f"    certificate: {cert}\n    key: {key}\n")
    trust = CERTS_D / where
    trust.mkdir(parents=True, exist_ok=True)
    shutil.copy(cert, trust / "ca.crt")
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(base / "config.yml")], stdout=log, stderr=log,
                            start_new_session=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection((host_addr, port), timeout=0.5).close()
                break
            assert proc.poll() is None, (base / "registry.log").read_text()
            time.sleep(0.1)
        yield where
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(trust, ignore_errors=True)


@contextlib.contextmanager
def two_nodes(base: Path) -> Iterator[Cluster]:
    """This host's engine as the manager and a second engine as a worker, with a registry; all undone after."""
    engine = docker.from_env()
    _wait_swarm_inactive(engine, timeout=300)
    worker = Worker(name=f"mn{secrets.token_hex(3)}", index=100 + secrets.randbelow(100), addr="", host_addr="")
    try:
        worker.addr = worker.script("start")
        worker.host_addr = worker.addr.rsplit(".", 1)[0] + ".1"
        engine.swarm.init(advertise_addr=worker.host_addr, listen_addr=f"{worker.host_addr}:{free_port()}")
        manager_addr = engine.info()["Swarm"]["RemoteManagers"][0]["Addr"]
        token = engine.swarm.attrs["JoinTokens"]["Worker"]
        wk = worker.engine()
        wk.swarm.join(remote_addrs=[manager_addr], join_token=token, advertise_addr=worker.addr,
                      listen_addr=f"{worker.addr}:2377")
        worker.node_id = wk.info()["Swarm"]["NodeID"]
        for _ in range(100):
            if engine.nodes.get(worker.node_id).attrs["Status"]["State"] == "ready":
                break
            time.sleep(0.2)
        with registry(worker.host_addr, base / "registry") as reg:
            yield Cluster(manager=engine, worker=worker, registry=reg)
    finally:
        with contextlib.suppress(Exception):
            worker.engine().swarm.leave(force=True)
        with contextlib.suppress(Exception):
            engine.swarm.leave(force=True)
        for _ in range(50):
            try:
                engine.networks.get("docker_gwbridge").remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(0.2)
        if worker.name:
            worker.script("stop")

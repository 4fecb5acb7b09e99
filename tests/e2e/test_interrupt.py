"""Ctrl-C on `make run` stops `pushdock serve` and nothing else: the Docker engine that set-up started, the apps
and the proxy keep serving, and a restarted serve reconciles what changed while it was down.

A terminal's Ctrl-C is SIGINT to every process of its foreground process group: here `make run` runs in a
session of its own (as a job in a terminal does) and the test sends SIGINT to that whole group. To prove that the
engine set-up starts is outside that group, the engine must be started *by* that `make run`: the shared dockerd is
stopped first, so the test is marked engine_restart and runs alone (`pytest --engine-restart`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import docker
import pytest

from tests.e2e.test_engine_restart import WORKER, app_containers, engine_up, start_engine, stop_engine, wait_served
from tests.harness import ROOT, Server, unique, wait_port

pytestmark = [pytest.mark.docker, pytest.mark.engine_restart]


def make_run(server: Server) -> subprocess.Popen[bytes]:
    """`make run` with the server's settings, in a process group of its own (pgid = its pid)."""
    log = open(server.base / "make-run.log", "ab")
    proc = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=server.env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(server.ssh_port, 120)
        wait_port(server.proxy_port, 30)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("make run did not serve:\n" + (server.base / "make-run.log").read_text()[-3000:]) from None
    return proc


def test_ctrl_c_on_make_run_leaves_the_engine_and_apps_serving(tmp_path) -> None:
    server = Server(tmp_path)
    server.add_key()
    app = unique("intr")
    stop_engine()
    proc = None
    try:
        proc = make_run(server)  # set-up finds no engine and starts one
        assert engine_up()
        work = server.app_repo(app, body="outlives serve")
        server.commit(work, "web and worker", {"Procfile": "web: python3 -u /app/server.py\n" + WORKER})
        res = server.push(work, app)
        assert res.returncode == 0, res.stderr
        server.cli("ps:scale", app, "worker=1")
        assert server.get(app) == (200, "outlives serve")
        before = app_containers(app)

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) is not None
        with open(server.base / "make-run.log") as f:
            print(f.read()[-2000:])

        assert engine_up(), "the engine stopped with make run"
        assert app_containers(app) == before
        assert {s for _, s in before.values()} == {"running"}
        ok = sum(server.get(app) == (200, "outlives serve") for _ in range(20))
        assert ok == 20, "the apps stopped serving when serve stopped"

        # While serve is down the worker instance goes away; a restarted serve reconciles it back.
        worker = next(n for n in before if ".worker." in n)
        docker.from_env().containers.get(worker).remove(force=True)
        server.start()
        deadline = time.monotonic() + 60
        # until it runs, not only exists: a container is listed as created a moment before it is started
        while time.monotonic() < deadline and not any(".worker." in n and s == "running"
                                                      for n, (_, s) in app_containers(app).items()):
            time.sleep(0.5)
        after = app_containers(app)
        assert any(".worker." in n and s == "running" for n, (_, s) in after.items()), after
        wait_served(server, app, "outlives serve")
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if not engine_up():
            start_engine()
        server.stop()

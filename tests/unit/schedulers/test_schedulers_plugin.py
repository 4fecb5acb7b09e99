"""The schedulers plugin: registered through the bus, and cheap to import (no docker SDK)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pushdock.bus import Bus
from schedulers import plugin
from schedulers.docker_local.scheduler import DockerLocalScheduler


def test_registers_docker_local(tmp_path: Path):
    bus = Bus(tmp_path / "plugins", extra_plugins=(plugin,), entry_points=False)
    found = bus.lookup("schedulers", "docker-local")
    assert isinstance(found, DockerLocalScheduler) and found.name == "docker-local"


def test_importing_the_plugin_and_scheduler_does_not_import_docker():
    code = (
        "import sys, schedulers.plugin as p; p.register_schedulers(); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('docker', 'requests')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])

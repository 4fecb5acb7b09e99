"""What the dashboard shows of the host and of each app's containers: CPU, memory, disk (from /proc and the
data dir's file system) and the engine's stats of the containers labelled `pushdock.app`."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Identity

STATS_THREADS = 8


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values), idle


def host(ctx: Context) -> dict[str, Any]:
    """CPU use over a short sample, load, memory and the data dir's disk."""
    total0, idle0 = _cpu_times()
    time.sleep(0.2)
    total1, idle1 = _cpu_times()
    busy = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    mem: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            mem[key] = int(rest.split()[0]) * 1024
    disk = shutil.disk_usage(ctx.settings.data_dir)
    return {"cpus": os.cpu_count() or 1, "cpu_percent": round(100 * busy, 1), "load": os.getloadavg(),
            "mem_total": mem.get("MemTotal", 0), "mem_used": mem.get("MemTotal", 0) - mem.get("MemAvailable", 0),
            "disk_total": disk.total, "disk_used": disk.used}


def containers(ctx: Context, who: Identity) -> list[dict[str, Any]]:
    """Each running container of this pushdock (label `pushdock.data-dir`: other instances on the engine are not
    ours to show) the caller may see: app, process, release, CPU %, memory (engine stats)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        client = docker.from_env(timeout=10)
        mine = client.containers.list(filters={"label": [f"pushdock.data-dir={ctx.settings.data_dir.absolute()}",
                                                         "pushdock.app"]})
        found = [c for c in mine if who.may_use(c.labels.get("pushdock.app", ""))]
    except docker.errors.DockerException:
        return []
    with ThreadPoolExecutor(STATS_THREADS) as pool:
        return sorted(pool.map(_usage, found), key=lambda r: (r["app"], r["name"]))


def _usage(container: Any) -> dict[str, Any]:
    row = {"name": container.name, "app": container.labels.get("pushdock.app", ""),
           "process": container.labels.get("pushdock.process", ""),
           "release": container.labels.get("pushdock.release", ""), "cpu_percent": None, "mem": None}
    try:
        s = container.stats(stream=False)
    except Exception:  # gone meanwhile: shown without figures
        return row
    cpu, pre = s.get("cpu_stats", {}), s.get("precpu_stats", {})
    delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if system > 0:
        row["cpu_percent"] = round(100 * delta / system * (cpu.get("online_cpus") or 1), 1)
    usage = s.get("memory_stats", {})
    if "usage" in usage:
        row["mem"] = usage["usage"] - usage.get("stats", {}).get("inactive_file", 0)
    return row


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"

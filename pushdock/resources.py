"""Resource limits: memory and CPU per process type (`resource:limit`), and the memory cap of builds.

One property, `resource/APP/limits`, holds a JSON object of key -> {"memory": bytes, "cpu": cpus}:
a key is a process type (`web`, `worker`…), `_default_` (every process type without its own value, one-off
`run` containers and release tasks included) or `_build_` (the app's builds). Process type names start with
a letter, so the two reserved keys never collide with one. Schedulers read the limits when they create an
instance (so they apply from the next deploy or restart); builders read the build cap.

Without an app `_build_` memory, builds get PUSHDOCK_BUILD_MEMORY, by default half the host's memory: a build
that runs away is killed by the kernel inside its container, never the host.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushdock.errors import UsageError
from pushdock.state import PROCESS_NAME

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import State

PLUGIN, PROPERTY = "resource", "limits"
DEFAULT = "_default_"
BUILD = "_build_"
MIN_MEMORY = 6 * 1024 * 1024  # the Docker engine's own minimum
MAX_MEMORY = 1 << 40  # 1 TiB: anything above is a typo
MIN_CPU, MAX_CPU = 0.01, 1024.0
UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MEMORY = re.compile(r"^([0-9]{1,13})(?:\.([0-9]{1,3}))?\s?([bkmgt]?)(?:i?b)?\Z", re.IGNORECASE)
CPU = re.compile(r"^[0-9]{1,4}(?:\.[0-9]{1,2})?\Z")


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    cpu: float | None = None  # CPUs (0.5 = half of one)

    def __bool__(self) -> bool:
        return self.memory is not None or self.cpu is not None

    def over(self, base: Limits) -> Limits:
        """These limits, falling back to `base` field by field."""
        return Limits(self.memory if self.memory is not None else base.memory,
                      self.cpu if self.cpu is not None else base.cpu)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("memory", self.memory), ("cpu", self.cpu)) if v is not None}

    def describe(self) -> str:
        parts = []
        if self.memory is not None:
            parts.append(f"memory {format_memory(self.memory)}")
        if self.cpu is not None:
            parts.append(f"cpu {self.cpu:g}")
        return ", ".join(parts) or "unlimited"


# -- parsing ---------------------------------------------------------------------------------------------
def parse_memory(text: str) -> int:
    """`256m`, `1g`, `1.5g`, `512MiB`, `268435456` -> bytes; UsageError (one line) otherwise."""
    m = MEMORY.match(text.strip())
    if not m:
        raise UsageError(f"memory must be a size such as 256m or 1g (got {text[:30]!r})")
    whole, frac, unit = m.group(1), m.group(2) or "", m.group(3).lower()
    value: int = (int(whole) * 10 ** len(frac) + int(frac or 0)) * UNITS[unit] // 10 ** len(frac)
    if value < MIN_MEMORY:
        raise UsageError(f"memory must be at least 6m (got {text[:30]!r})")
    if value > MAX_MEMORY:
        raise UsageError(f"memory must be at most 1t (got {text[:30]!r})")
    return value


def parse_cpu(text: str) -> float:
    """`0.5`, `2` -> CPUs, with at most two decimals; UsageError (one line) otherwise."""
    clean = text.strip()
    if not CPU.match(clean):
        raise UsageError(f"cpu must be a number of CPUs such as 0.5 or 2 (got {text[:30]!r})")
    return check_cpu(float(clean))


def check_cpu(value: float) -> float:
    if not (math.isfinite(value) and MIN_CPU <= value <= MAX_CPU) or round(value, 2) != value:
        raise UsageError(f"cpu must be between {MIN_CPU:g} and {MAX_CPU:g} with at most two decimals "
                         f"(got {value:g})")
    return value


def format_memory(value: int) -> str:
    """Bytes -> the shortest exact size: 268435456 -> `256m` (parse_memory(format_memory(n)) == n)."""
    for unit in ("t", "g", "m", "k"):
        if value % UNITS[unit] == 0:
            return f"{value // UNITS[unit]}{unit}"
    return str(value)


def check_key(key: str) -> str:
    if key in (DEFAULT, BUILD) or PROCESS_NAME.match(key):
        return key
    raise UsageError(f"{key[:40]!r} is not a process type (lowercase letters, digits, '-', '_'), {DEFAULT} or {BUILD}")


# -- storage ---------------------------------------------------------------------------------------------
def stored(state: State, app: str) -> dict[str, Limits]:
    """Every key's limits as stored (unreadable entries are left out, not fatal: deploys must go on)."""
    raw = state.get_json(PLUGIN, app, PROPERTY, {})
    out: dict[str, Limits] = {}
    for key, value in (raw.items() if isinstance(raw, dict) else ()):
        if not isinstance(value, dict):
            continue
        memory, cpu = value.get("memory"), value.get("cpu")
        out[key] = Limits(memory if isinstance(memory, int) else None,
                          float(cpu) if isinstance(cpu, (int, float)) else None)
    return out


def store(state: State, app: str, limits: dict[str, Limits]) -> None:
    kept = {k: v.to_dict() for k, v in sorted(limits.items()) if v}
    if kept:
        state.set(PLUGIN, app, PROPERTY, json.dumps(kept, sort_keys=True))
    else:
        state.delete(PLUGIN, app, PROPERTY)


def for_process(state: State, app: str, process: str) -> Limits:
    """What an instance of `process` runs with: its own values over the app's `_default_`."""
    limits = stored(state, app)
    return limits.get(process, Limits()).over(limits.get(DEFAULT, Limits()))


def for_build(ctx: Context, app: str) -> Limits:
    """What the app's builds run with: its `_build_` limits over PUSHDOCK_BUILD_MEMORY (default: half the host)."""
    own = stored(ctx.state, app).get(BUILD, Limits())
    configured = ctx.settings.build_memory.strip()
    try:
        default = parse_memory(configured) if configured else max(MIN_MEMORY, host_memory() // 2)
    except UsageError as e:
        raise UsageError(f"PUSHDOCK_BUILD_MEMORY: {e}") from None
    return own.over(Limits(memory=default))


def host_memory() -> int:
    """Total memory of this host in bytes (from /proc/meminfo)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2 << 30  # unknown: assume a small host


# -- what the engine takes -------------------------------------------------------------------------------
def host_config(limits: Limits) -> dict[str, Any]:
    """Keyword arguments of docker's create_host_config: a hard memory limit (no extra swap) and a CPU quota."""
    out: dict[str, Any] = {}
    if limits.memory is not None:
        out["mem_limit"] = limits.memory
        out["memswap_limit"] = limits.memory
    if limits.cpu is not None:
        out["nano_cpus"] = round(limits.cpu * 1e9)
    return out


def swarm_resources(limits: Limits) -> Any:
    """docker.types.Resources for a service's task template, or None without limits."""
    if not limits:
        return None
    from docker.types import Resources  # noqa: PLC0415 -- start-up: docker loads when first used

    return Resources(cpu_limit=round(limits.cpu * 1e9) if limits.cpu is not None else None,
                     mem_limit=limits.memory)


def build_container_limits(limits: Limits) -> dict[str, int]:
    """`container_limits` of the engine's image build API (memory only: it has no CPU quota)."""
    if limits.memory is None:
        return {}
    return {"memory": limits.memory, "memswap": limits.memory}


def build_out_of_memory(limits: Limits) -> str:
    """The one-line reason of a build the kernel killed at its memory cap."""
    cap = format_memory(limits.memory) if limits.memory is not None else "unknown"
    return (f"the build ran out of memory (its cap is {cap}; raise it with "
            "`resource:limit APP --build --memory SIZE` or PUSHDOCK_BUILD_MEMORY)")

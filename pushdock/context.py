"""The per-entry-point context handed down to commands, the pipeline and plugins."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pushdock.errors import PushdockError
from pushdock.state import Identity, State

if TYPE_CHECKING:
    from pushdock.bus import Bus
    from pushdock.chain import Pipeline
    from pushdock.proxy import Proxy
    from pushdock.scheduler import Scheduler
    from pushdock.settings import Settings


@dataclass
class Context:
    settings: Settings
    identity: Identity = field(default_factory=lambda: Identity(name="root", role="admin", door="cli"))
    bus_override: Bus | None = None

    @cached_property
    def state(self) -> State:
        """The data dir, opened: every entry point comes here first, so an older schema is migrated here
        and a newer one refused (PushdockError) before anything reads or writes it."""
        from pushdock.migrations import ensure_current  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

        state = State(self.settings.data_dir)
        ensure_current(state, self.identity)
        return state

    @cached_property
    def bus(self) -> Bus:
        if self.bus_override is not None:
            return self.bus_override
        from pushdock.bus import Bus  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

        return Bus(self.state.path("plugins"))

    @cached_property
    def pipeline(self) -> Pipeline:
        """The deploy chain (hooks/pipeline.py), as the built-in `pipeline` plugin hands it over."""
        chain: Pipeline | None = self.bus.first("pipeline")
        if chain is None:
            raise PushdockError("no deploy pipeline: the built-in plugin `pipeline` is not loaded")
        return chain

    # -- selected implementations (registry lookups by name, never if/elif over kinds) ------------
    def scheduler(self, app: str | None = None) -> Scheduler:
        name = ((app and self.state.get("scheduler", app, "selected"))
                or self.state.get("scheduler", "--global", "selected") or self.settings.scheduler)
        return self.bus.lookup("schedulers", name)

    def proxy(self) -> Proxy:
        name = self.state.get("proxy", "--global", "selected") or self.settings.proxy
        return self.bus.lookup("proxies", name)

    def domains(self, app: str) -> list[str]:
        """The app's hostnames: APP.DOMAIN and APP.<each global domain> (unless disabled), then its own.

        Never empty: with the defaults disabled and no domain of its own, APP.DOMAIN is kept.
        """
        extra = self.state.get_json("domains", app, "list", [])
        suffixes = [self.settings.domain, *self.state.get_json("domains", "--global", "list", [])]
        defaults = [] if self.state.get("domains", app, "default-disabled") else [f"{app}.{s}" for s in suffixes]
        return list(dict.fromkeys([*defaults, *extra])) or [f"{app}.{self.settings.domain}"]

    def reserved_for(self, name: str) -> tuple[str, str] | None:
        """(app, suffix) if hostname `name` lies under the global domain or a global suffix, else None.

        `APP.SUFFIX` and every name under it belong to app APP, whether it exists yet or not; the suffix
        itself and a wildcard over it (`*.SUFFIX`) belong to no app (app ""): only an admin assigns them.
        """
        for suffix in [self.settings.domain, *self.state.get_json("domains", "--global", "list", [])]:
            if name == suffix:
                return "", suffix
            if name.endswith(f".{suffix}"):
                label = name[: -len(suffix) - 1].rsplit(".", 1)[-1]
                return ("" if label == "*" else label), suffix
        return None

    def event(self, action: str, *, app: str | None = None, result: str = "ok", started: float | None = None,
              **extra: Any) -> None:
        """Append an audit event (who, door, app, action, result, duration); never values of secrets."""
        ev = {"time": time.time(), "who": self.identity.name, "door": self.identity.door,
              "app": app, "action": action, "result": result, **extra}
        if started is not None:
            ev["duration"] = round(time.time() - started, 3)
        self.state.append_event(ev)


def load_settings() -> Settings:
    """The entry point's Settings (PUSHDOCK_* environment), with the cyclic GC paused while they load.

    Importing pydantic-settings makes tens of thousands of objects that live as long as the process:
    with the GC paused it takes ~10 ms less, and frozen they are never rescanned by later collections.
    """
    import gc  # noqa: PLC0415 -- start-up: only settings loading pauses the GC

    gc.disable()
    try:
        from pushdock.settings import Settings  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

        return Settings()
    finally:
        gc.freeze()
        gc.enable()

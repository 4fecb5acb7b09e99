"""The trigger bus: the only place hooks are fired.

Python plugins implement `pushdock.specs` through pluggy (entry-point group `pushdock`, built-ins
included); executable scripts in DATA_DIR/plugins/<plugin>/<trigger-name> implement them in any
language, as Dokku's plugn does. A third-party plugin that fails to load (import error, a hook
misspelt, a bad plugin.toml) is left out and its error kept in `load_errors`; built-ins fail loudly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import pluggy
from loguru import logger

from pushdock import proc, specs
from pushdock.errors import HookFailed, NotFound, PushdockError

if TYPE_CHECKING:
    from pushdock.builder import Builder
    from pushdock.datastore import Datastore
    from pushdock.proxy import Proxy
    from pushdock.scheduler import Scheduler

ENTRY_POINT_GROUP = "pushdock"


def warm_builtins() -> None:
    """Import the built-in plugins and the modules each names in its WARM tuple (what its hooks import lazily), for
    serve's zygote (pushdock/zygote.py): the workers it forks start with them loaded. Nothing is registered."""
    import importlib  # noqa: PLC0415 -- start-up: only the zygote warms
    import importlib.metadata as md  # noqa: PLC0415 -- start-up: only the zygote warms

    for ep in md.distribution("pushdock").entry_points:
        if ep.group == ENTRY_POINT_GROUP:
            for name in getattr(ep.load(), "WARM", ()):
                importlib.import_module(name)


def script_name(trigger: str) -> str:
    return trigger.replace("_", "-")


class Bus:
    """A fresh plugin manager plus the script plugins of one data dir."""

    def __init__(self, plugins_dir: Path, *, extra_plugins: tuple[object, ...] = (), entry_points: bool = True):
        self.plugins_dir = plugins_dir
        self.pm = pluggy.PluginManager("pushdock")
        self.pm.add_hookspecs(specs)
        # {normalised distribution name: one line}: third-party Python plugins that did not load
        self.load_errors: dict[str, str] = {}
        self._third_party: dict[int, str] = {}
        if entry_points:
            self._load_entry_points()
        for p in extra_plugins:
            self.pm.register(p)
        self._check_pending()
        self._registries: dict[str, dict[str, Any]] = {}

    def _load_entry_points(self) -> None:
        """pluggy's load_setuptools_entrypoints, but a third-party plugin's failure is kept, not raised."""
        import importlib.metadata as md  # noqa: PLC0415 -- start-up: importlib.metadata loads when first used

        from pushdock.plugins import disabled_packages, norm_package  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

        disabled = disabled_packages(self.plugins_dir)
        for dist in md.distributions():
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
            if not eps:
                continue
            package = norm_package(dist.metadata["name"] or "")
            if package == "pushdock":  # the built-ins: a failure is a bug, and says so
                for ep in eps:
                    if self.pm.get_plugin(ep.name) is None:
                        self.pm.register(ep.load(), name=ep.name)
                continue
            if package in disabled:
                continue
            for ep in eps:
                if self.pm.get_plugin(ep.name) is not None:
                    continue
                try:
                    plugin = ep.load()
                    self.pm.register(plugin, name=ep.name)
                except Exception as e:
                    self._failed(package, e)
                    continue
                self._third_party[id(plugin)] = package

    def _check_pending(self) -> None:
        """pluggy's check_pending; a third-party plugin implementing an unknown hook is unregistered."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as e:
                package = self._third_party.get(id(e.plugin))
                if package is None:
                    raise
                self.pm.unregister(e.plugin)
                self._failed(package, e)

    def _failed(self, package: str, e: BaseException) -> None:
        line = (str(e).strip().splitlines() or [""])[0][:200]
        self.load_errors[package] = f"{type(e).__name__}: {line}"
        logger.error("plugin failed to load", package=package, error=self.load_errors[package])

    def script_plugins(self) -> list[str]:
        """The script plugins that run: enabled and loaded (pushdock/plugins.py), by name.

        Looked at on every firing (a few small files), so `plugin:disable` holds at once in a long-lived `serve`.
        """
        from pushdock.plugins import scan  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

        return [p.name for p in scan(self.plugins_dir) if p.kind == "script" and p.runs]

    # -- firing -----------------------------------------------------------------------------------
    def call(self, trigger: str, **kwargs: Any) -> list[Any]:
        """Fire a trigger: every Python implementation, then every script; results in that order."""
        hook = getattr(self.pm.hook, trigger)
        try:
            result = hook(**kwargs)
        except PushdockError:
            raise
        except Exception as e:
            logger.exception("trigger failed", trigger=trigger)
            raise HookFailed(f"trigger {script_name(trigger)} failed: {type(e).__name__}: {e}") from e
        results = result if isinstance(result, list) else ([] if result is None else [result])
        if trigger not in specs.PYTHON_ONLY:
            results += self._run_scripts(trigger, kwargs)
        return results

    def first(self, trigger: str, **kwargs: Any) -> Any:
        """Fire a firstresult trigger: the first non-empty answer, Python plugins before scripts."""
        answer = getattr(self.pm.hook, trigger)(**kwargs)
        if answer not in (None, "") or trigger in specs.PYTHON_ONLY:
            return answer
        for out in self._run_scripts(trigger, kwargs):
            if out:
                return out
        return None

    def _run_scripts(self, trigger: str, kwargs: dict[str, Any]) -> list[str]:
        name = script_name(trigger)
        plugins = self.script_plugins()
        order = list(getattr(self.pm.hook, trigger).spec.argnames)
        argv_tail = [_as_arg(kwargs[a]) for a in order if a in kwargs and a != "ctx"]
        outputs = []
        for plugin in plugins:
            script = self.plugins_dir / plugin / name
            if not (script.is_file() and os.access(script, os.X_OK)):
                continue
            res = proc.run([str(script), *argv_tail], check=False, timeout=600)
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
                raise HookFailed(f"trigger {name} of plugin {plugin} failed: {last}")
            outputs.append(res.stdout.strip())
        return outputs

    # -- registries -------------------------------------------------------------------------------
    @overload
    def registry(self, kind: Literal["builders"]) -> dict[str, Builder]: ...
    @overload
    def registry(self, kind: Literal["schedulers"]) -> dict[str, Scheduler]: ...
    @overload
    def registry(self, kind: Literal["proxies"]) -> dict[str, Proxy]: ...
    @overload
    def registry(self, kind: Literal["services"]) -> dict[str, Datastore]: ...
    def registry(self, kind: str) -> dict[str, Any]:
        return self._registry(kind)

    def _registry(self, kind: str) -> dict[str, Any]:
        """{name: implementation} of `builders`, `schedulers`, `proxies` or `services`, built when first asked.

        A name two plugins register is refused (PushdockError naming both), never won by registration order.
        """
        if kind not in self._registries:
            merged: dict[str, Any] = {}
            owners: dict[str, str] = {}
            for impl in getattr(self.pm.hook, f"register_{kind}").get_hookimpls():
                for name, implementation in (impl.function() or {}).items():
                    if name in merged:
                        raise PushdockError(f"{kind[:-1]} {name!r} is registered twice: by plugin {owners[name]} "
                                            f"and by plugin {impl.plugin_name}")
                    merged[name], owners[name] = implementation, impl.plugin_name
            self._registries[kind] = merged
        return self._registries[kind]

    @overload
    def lookup(self, kind: Literal["builders"], name: str) -> Builder: ...
    @overload
    def lookup(self, kind: Literal["schedulers"], name: str) -> Scheduler: ...
    @overload
    def lookup(self, kind: Literal["proxies"], name: str) -> Proxy: ...
    @overload
    def lookup(self, kind: Literal["services"], name: str) -> Datastore: ...
    def lookup(self, kind: str, name: str) -> Any:
        reg = self._registry(kind)
        try:
            return reg[name]
        except KeyError:
            known = ", ".join(sorted(reg)) or "none"
            raise NotFound(f"unknown {kind[:-1]} {name!r} (known: {known})") from None


def _as_arg(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)

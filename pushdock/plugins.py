"""What plugins a data dir has, and whether each loads: the model behind `plugin:*` and the bus.

Every plugin is a directory `DATA_DIR/plugins/<name>/`: a script plugin holds its trigger scripts (and an
optional `plugin.toml`); a Python plugin's holds only its record (the package it installed). Two hidden
files are pushdock's own: `.pushdock-plugin.json` (how `plugin:install` got it) and `.disabled`
(`plugin:disable`). A directory put there by hand is a plugin too (triggers.md). A plugin that does not
load (a bad `plugin.toml`, a trigger script that is not executable, a Python package missing or failing
to import) is listed with its error and never runs; nothing else is affected.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD = ".pushdock-plugin.json"
DISABLED = ".disabled"
NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# plugin.toml's `[plugin]` keys and their types; anything else is an error, so a typo is seen.
TOML_KEYS = {"name": str, "version": str, "description": str}


def norm_package(name: str) -> str:
    """A Python distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Plugin:
    name: str
    path: Path
    kind: str  # "script" or "python"
    enabled: bool
    source: str = ""
    version: str = ""
    description: str = ""
    package: str = ""
    triggers: tuple[str, ...] = ()
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> bool:
        return self.enabled and self.error is None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "enabled": self.enabled, "loaded": self.error is None,
                "error": self.error, "version": self.version, "description": self.description,
                "source": self.source, "package": self.package or None, "triggers": list(self.triggers),
                "installed": self.record.get("installed"), "commit": self.record.get("commit")}


def trigger_names() -> frozenset[str]:
    """Script names of the triggers scripts may implement (docs/triggers.md)."""
    from pushdock import specs  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    names = [n for n in dir(specs) if not n.startswith("_") and callable(getattr(specs, n))
             and hasattr(getattr(specs, n), "pushdock_spec")]
    return frozenset(n.replace("_", "-") for n in names if n not in specs.PYTHON_ONLY)


def read_toml(path: Path) -> dict[str, str]:
    """The `[plugin]` table of a plugin.toml (absent: {}); ValueError with one line if it is not valid."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"plugin.toml: {str(e).splitlines()[0]}") from None
    unknown = sorted(set(doc) - {"plugin"})
    if unknown:
        raise ValueError(f"plugin.toml: unknown table or key {unknown[0]!r} (only [plugin])")
    table = doc.get("plugin", {})
    if not isinstance(table, dict):
        raise ValueError("plugin.toml: `plugin` must be a table")
    for key, value in table.items():
        want = TOML_KEYS.get(key)
        if want is None:
            raise ValueError(f"plugin.toml: unknown key plugin.{key} (known: {', '.join(TOML_KEYS)})")
        if not isinstance(value, want):
            raise ValueError(f"plugin.toml: plugin.{key} must be a string")
    return {k: str(v) for k, v in table.items()}


def check_dir(path: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """(plugin.toml's [plugin] table, the triggers it implements) of a script plugin; ValueError if it
    would not load: a bad plugin.toml, or a file named after a trigger that is not an executable file."""
    meta = read_toml(path / "plugin.toml")
    known = trigger_names()
    found = []
    for entry in sorted(os.listdir(path)):
        if entry not in known:
            continue
        script = path / entry
        if not (script.is_file() and os.access(script, os.X_OK)):
            raise ValueError(f"trigger {entry} is not an executable file")
        found.append(entry)
    return meta, tuple(found)


def _record(path: Path) -> dict[str, Any]:
    try:
        rec = json.loads((path / RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def load(path: Path, python_errors: dict[str, str] | None = None) -> Plugin:
    """One plugin directory as a Plugin: what it is, whether it is enabled, and its load error."""
    rec = _record(path)
    enabled = not (path / DISABLED).exists()
    kind = "python" if rec.get("kind") == "python" else "script"
    common: dict[str, Any] = {"name": path.name, "path": path, "kind": kind, "enabled": enabled, "record": rec,
              "source": str(rec.get("source", "")) or ("(placed by hand)" if not rec else "")}
    if kind == "python":
        return _load_python(path, rec, common, python_errors or {})
    try:
        meta, triggers = check_dir(path)
    except (OSError, ValueError) as e:
        return Plugin(**common, error=str(e))
    return Plugin(**common, version=meta.get("version", ""), description=meta.get("description", ""),
                  triggers=triggers)


def _load_python(path: Path, rec: dict[str, Any], common: dict[str, Any], errors: dict[str, str]) -> Plugin:
    import importlib.metadata as md  # noqa: PLC0415 -- start-up: importlib.metadata loads when first used

    package = str(rec.get("package", ""))
    try:
        dist = md.distribution(package)
    except (md.PackageNotFoundError, ValueError):
        return Plugin(**common, package=package, error=f"package {package} is not installed "
                      f"(a `make setup` re-sync removes it: `plugin:update {path.name}` puts it back)")
    summary = (dist.metadata["Summary"] if "Summary" in dist.metadata else "") or ""
    hooks = [ep.name for ep in dist.entry_points if ep.group == "pushdock"]
    error = errors.get(norm_package(package))
    if error is None and not hooks:
        error = f"package {package} declares no `pushdock` entry point"
    return Plugin(**common, package=package, version=dist.version, description=summary,
                  triggers=tuple(hooks), error=error)


def scan(plugins_dir: Path, python_errors: dict[str, str] | None = None) -> list[Plugin]:
    """Every plugin of the data dir, by name (hidden entries are pushdock's own)."""
    try:
        entries = sorted(os.listdir(plugins_dir))
    except FileNotFoundError:
        return []
    return [load(plugins_dir / e, python_errors) for e in entries
            if not e.startswith(".") and (plugins_dir / e).is_dir()]


def disabled_packages(plugins_dir: Path) -> frozenset[str]:
    """Python packages whose plugin is disabled: the bus does not load their entry points."""
    out = set()
    try:
        entries = os.listdir(plugins_dir)
    except FileNotFoundError:
        return frozenset()
    for e in entries:
        path = plugins_dir / e
        if e.startswith(".") or not (path / DISABLED).exists():
            continue
        rec = _record(path)
        if rec.get("kind") == "python" and rec.get("package"):
            out.add(norm_package(str(rec["package"])))
    return frozenset(out)

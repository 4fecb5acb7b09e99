"""The Python dependencies are locked: uv.lock agrees with pyproject.toml, pins every package with hashes,
and the environment the tests run in is the lock's (set-up installs exactly it: `uv sync --frozen`)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _lock() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "uv.lock").read_text())


def _project(lock: dict) -> dict:  # type: ignore[type-arg]
    return next(p for p in lock["package"] if p["name"] == "pushdock")


def _declared() -> set[tuple[str, str, str]]:
    """(name, specifier, extra) for every requirement pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = set()
    groups = {"": project["dependencies"], **project.get("optional-dependencies", {})}
    for extra, reqs in groups.items():
        for text in reqs:
            r = Requirement(text)
            out.add((canonicalize_name(r.name), str(r.specifier), extra))
    return out


def _locked_requirements(lock: dict) -> set[tuple[str, str, str]]:  # type: ignore[type-arg]
    out = set()
    for r in _project(lock)["metadata"]["requires-dist"]:
        marker = r.get("marker", "")
        extra = marker.split("==")[1].strip(" '\"") if marker.startswith("extra") else ""
        spec = str(Requirement(f"x{r.get('specifier', '')}").specifier)
        out.add((canonicalize_name(r["name"]), spec, extra))
    return out


def test_the_lock_was_made_from_this_pyproject() -> None:
    """A dependency added, removed or re-ranged in pyproject.toml without `make lock` fails here."""
    declared, locked = _declared(), _locked_requirements(_lock())
    assert declared == locked, (
        f"pyproject.toml and uv.lock disagree (run `make lock`): only in pyproject {sorted(declared - locked)}, "
        f"only in uv.lock {sorted(locked - declared)}")


def test_every_locked_package_is_pinned_with_hashes() -> None:
    for pkg in _lock()["package"]:
        if pkg["name"] == "pushdock":
            continue
        hashes = [w["hash"] for w in pkg.get("wheels", [])] + ([pkg["sdist"]["hash"]] if "sdist" in pkg else [])
        assert pkg.get("version") and hashes and all(h.startswith("sha256:") for h in hashes), pkg["name"]


def test_the_environment_is_the_lock() -> None:
    """Every locked package that is installed here has exactly its locked version, and every direct
    dependency is installed: the suite never runs against whatever happened to be newest that day."""
    locked = {canonicalize_name(p["name"]): p["version"] for p in _lock()["package"] if p["name"] != "pushdock"}
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (installed[n], v) for n, v in locked.items() if n in installed and installed[n] != v}
    assert not wrong, f"installed (version, locked version) differ: {wrong}: run `make setup`"
    missing = {name for name, _, _ in _declared()} - installed.keys()
    assert not missing, f"declared but not installed: {sorted(missing)}"

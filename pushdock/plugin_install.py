"""plugin:install|update|uninstall|enable|disable: putting plugins into DATA_DIR/plugins, all or nothing.

A script plugin is fetched (git clone of a URL or a local repository, or a copy of a local directory) into a
hidden staging directory beside its final place, checked as the bus would load it, and renamed into place;
a fetch or check that fails leaves nothing behind. Git runs hermetically: no prompts, no credential helpers,
no system or global config, no hooks. A Python plugin is a package from the host's allow-list
(`PUSHDOCK_PLUGIN_ALLOW`), installed with uv into pushdock's own environment under constraints that pin
every distribution already there, so the locked install is never up- or downgraded; `make setup` (a
`uv sync` of the lock) removes it again: `plugin:update NAME` puts it back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pushdock import proc
from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError, UsageError
from pushdock.plugins import DISABLED, NAME, RECORD, Plugin, check_dir, load, norm_package
from pushdock.state import atomic_write

if TYPE_CHECKING:
    from pushdock.context import Context

URL = re.compile(r"^(?:(?:https?|ssh|git|file)://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+)\Z")
PACKAGE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?\Z")
GIT_TIMEOUT = 120


def plugins_dir(ctx: Context) -> Path:
    return ctx.state.path("plugins")


def get(ctx: Context, name: str) -> Plugin:
    """The plugin NAME (NotFound if there is none)."""
    if not NAME.match(name):
        raise UsageError(f"invalid plugin name {name[:40]!r} (lowercase letters, digits and dashes)")
    path = plugins_dir(ctx) / name
    if not path.is_dir():
        raise NotFound(f"no plugin {name}", hint="plugin:list shows the installed plugins")
    return load(path, ctx.bus.load_errors)


def kind_of(source: str) -> str:
    """`script` for a git URL or an absolute path, `python` for a bare package name; UsageError otherwise."""
    if source.startswith("/") or URL.match(source):
        return "script"
    if PACKAGE.match(source):
        return "python"
    raise UsageError(f"invalid plugin source {source[:60]!r}: a git URL, an absolute path or a Python package name")


def default_name(source: str) -> str:
    base = source.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    base = base.removesuffix(".git")
    return norm_package(base)


# -- install / update ---------------------------------------------------------------------------------
def install(ctx: Context, source: str, name: str | None = None) -> Plugin:
    kind = kind_of(source)
    name = name or default_name(source)
    if not NAME.match(name):
        raise UsageError(f"invalid plugin name {name[:40]!r} (lowercase letters, digits and dashes): use --name")
    with ctx.state.global_lock("plugins"):
        dest = plugins_dir(ctx) / name
        if dest.exists():
            raise Conflict(f"plugin {name} is already installed", hint=f"plugin:update {name} refetches it")
        if kind == "python":
            return _install_python(ctx, source, dest)
        staging = _fetch(ctx, source, name)
        try:
            _write_record(staging, {"kind": "script", "source": source, "installed": _now(),
                                    "commit": _commit(staging)})
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return load(dest)


def update(ctx: Context, name: str) -> Plugin:
    """Fetch the plugin again from its source (a Python one: reinstall its package); the old one stays if it fails."""
    with ctx.state.global_lock("plugins"):
        plugin = get(ctx, name)
        rec = plugin.record
        if not rec.get("source"):
            raise UsageError(f"plugin {name} was not installed by plugin:install: it has no source to fetch")
        if plugin.kind == "python":
            _pip_install(ctx, str(rec["package"]), reinstall=True)
            _write_record(plugin.path, {**rec, "updated": _now()})
            return load(plugin.path)
        staging = _fetch(ctx, str(rec["source"]), name)
        old = plugin.path.with_name(f".old-{name}-{os.getpid()}")
        try:
            _write_record(staging, {**rec, "updated": _now(), "commit": _commit(staging)})
            if not plugin.enabled:
                (staging / DISABLED).touch()
            os.replace(plugin.path, old)
            os.replace(staging, plugin.path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    return load(plugin.path)


def uninstall(ctx: Context, name: str) -> Plugin:
    with ctx.state.global_lock("plugins"):
        plugin = get(ctx, name)
        if plugin.kind == "python" and plugin.package:
            _uv(ctx, ["pip", "uninstall", "--python", sys.executable, plugin.package], check=False)
        gone = plugin.path.with_name(f".gone-{name}-{os.getpid()}")
        os.replace(plugin.path, gone)  # no trigger of it runs from here on
        shutil.rmtree(gone, ignore_errors=True)
    return plugin


def set_enabled(ctx: Context, name: str, enabled: bool) -> Plugin:
    with ctx.state.global_lock("plugins"):
        plugin = get(ctx, name)
        marker = plugin.path / DISABLED
        if enabled:
            marker.unlink(missing_ok=True)
        else:
            atomic_write(marker, "")
    return load(plugin.path, ctx.bus.load_errors)


# -- script plugins: fetch ----------------------------------------------------------------------------
def _fetch(ctx: Context, source: str, name: str) -> Path:
    """The plugin's files in a staging dir (hidden, beside the plugins), checked; UsageError if not usable."""
    root = plugins_dir(ctx)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        local = Path(source) if source.startswith("/") else None
        if local is not None and not local.is_dir():
            raise UsageError(f"no directory {source[:80]}")
        if local is not None and not (local / ".git").exists():
            shutil.copytree(local, staging, symlinks=True)
        else:
            _git_clone(source, staging, shallow=local is None)
        try:
            check_dir(staging)
        except ValueError as e:
            raise UsageError(f"plugin {name} does not load: {e}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def git_env() -> dict[str, str]:
    """git with nothing to ask and nothing of the host's: no prompt, no credential helper, no user config."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GCM_INTERACTIVE": "never",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"}


def _git_clone(source: str, dest: Path, *, shallow: bool) -> None:
    argv = ["git", "-c", "credential.helper=", "-c", "core.askPass=", "-c", "core.hooksPath=/dev/null",
            "-c", "protocol.ext.allow=never", "clone", "--quiet", "--no-tags", "--single-branch",
            *(["--depth", "1"] if shallow else []), "--", source, str(dest)]
    res = proc.run(argv, check=False, env=git_env(), timeout=GIT_TIMEOUT)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1].removeprefix("fatal: ").strip() if lines else f"exit status {res.returncode}"
        raise UsageError(f"git clone of {source[:80]} failed: {last[:200]}")


def _commit(path: Path) -> str | None:
    if not (path / ".git").exists():
        return None
    res = proc.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=False, env=git_env(), timeout=30)
    return res.stdout.strip() or None


# -- Python plugins -----------------------------------------------------------------------------------
def allowed(ctx: Context) -> list[str]:
    return [norm_package(p) for p in ctx.settings.plugin_allow.replace(",", " ").split()]


def _install_python(ctx: Context, package: str, dest: Path) -> Plugin:
    if norm_package(package) not in allowed(ctx):
        raise Forbidden(f"Python package {package} is not on the plugin allow-list",
                        hint="the host's PUSHDOCK_PLUGIN_ALLOW lists the packages plugin:install may install")
    import importlib.metadata as md  # noqa: PLC0415 -- start-up: importlib.metadata loads when first used

    try:
        md.distribution(package)
        raise Conflict(f"Python package {package} is already installed in pushdock's environment")
    except md.PackageNotFoundError:
        pass
    _pip_install(ctx, package)
    staging = dest.with_name(f".staging-{dest.name}-{os.getpid()}")
    staging.mkdir(parents=True)
    _write_record(staging, {"kind": "python", "source": package, "package": package, "installed": _now()})
    os.replace(staging, dest)
    plugin = _loaded(ctx, dest)
    if plugin.error:  # it would never run: take it out again, nothing half-installed
        uninstall_package = ["pip", "uninstall", "--python", sys.executable, package]
        _uv(ctx, uninstall_package, check=False)
        shutil.rmtree(dest, ignore_errors=True)
        raise UsageError(f"plugin {dest.name} does not load: {plugin.error}")
    return plugin


def _loaded(ctx: Context, path: Path) -> Plugin:
    """The plugin as a fresh bus (what the next command or deploy builds) would load it."""
    import importlib  # noqa: PLC0415 -- start-up: importlib.metadata loads when first used

    from pushdock.bus import Bus  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    importlib.invalidate_caches()
    return load(path, Bus(plugins_dir(ctx)).load_errors)


def _pip_install(ctx: Context, package: str, *, reinstall: bool = False) -> None:
    import importlib.metadata as md  # noqa: PLC0415 -- start-up: importlib.metadata loads when first used
    import tempfile  # noqa: PLC0415 -- start-up: tempfile loads when first used

    # Every distribution pushdock's environment holds now is pinned: a plugin may add packages, never move one.
    pins = sorted({f"{d.metadata['name']}=={d.version}" for d in md.distributions()
                   if d.metadata["name"] and norm_package(d.metadata["name"]) != norm_package(package)})
    plugins_dir(ctx).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=plugins_dir(ctx)) as f:
        f.write("\n".join(pins) + "\n")
        f.flush()
        _uv(ctx, ["pip", "install", "--python", sys.executable, "--constraint", f.name,
                  *(["--reinstall-package", package] if reinstall else []), package])


def find_uv() -> str:
    """pushdock's own uv (`.uv/bin/uv` beside the `.venv`, as set-up installs it), else one on PATH."""
    beside = Path(sys.prefix).parent / ".uv" / "bin" / "uv"
    if beside.is_file():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise PushdockError("uv is not installed: Python plugins are installed with it (`make setup` installs it)")
    return found


def _uv(ctx: Context, args: list[str], *, check: bool = True) -> None:
    # uv's own settings in serve's environment apply (a private index: UV_INDEX_URL, a wheel directory:
    # UV_FIND_LINKS, UV_OFFLINE...), but it never downloads a Python
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           **{k: v for k, v in os.environ.items() if k.startswith("UV_")},
           "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "LC_ALL": "C"}
    res = proc.run([find_uv(), *args], check=False, env=env, timeout=600)
    if check and res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        raise PushdockError(f"uv {args[1]} failed: {(lines[-1] if lines else str(res.returncode))[:200]}")


def _write_record(path: Path, rec: dict[str, object]) -> None:
    atomic_write(path / RECORD, json.dumps(rec, indent=1, sort_keys=True))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

"""`pushdock serve` as a systemd service: the unit, its environment file, and systemctl when systemd runs.

The unit runs this install's `pushdock serve` as root (it needs the Docker socket and binds the proxy's
ports), after and bound to docker.service. The settings live in an environment file under /etc that is
written once and never overwritten: it is the admin's. Uninstalling removes the unit only.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pushdock.errors import PushdockError, UsageError
from pushdock.state import atomic_write

if TYPE_CHECKING:
    from pushdock.settings import Settings

UNIT_NAME = "pushdock.service"
UNIT_DIR = Path("/etc/systemd/system")
ENV_FILE = Path("/etc/pushdock/pushdock.env")
SYSTEMD_RUNNING = Path("/run/systemd/system")  # sd_booted(): systemd is PID 1 and manages units
MANUAL = "systemctl daemon-reload && systemctl enable --now pushdock"
# systemd's own default PATH, after the venv's bin (caddy, pack and friends installed beside pushdock).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# One line per setting in the environment file; docs/settings.md has the whole story.
MEANINGS = {
    "data_dir": "all state: repos, properties, releases, proxy config, keys, logs",
    "ssh_host": "embedded SSH server address (git + admin commands)",
    "ssh_port": "embedded SSH server port",
    "http_host": "HTTP server address (/healthz, GitHub webhooks, git over HTTP, dashboard)",
    "http_port": "HTTP server port",
    "proxy": "nginx, caddy or traefik (`proxy:set --global TYPE` overrides it)",
    "proxy_port": "port the proxy serves apps on",
    "proxy_tls_port": "HTTPS port of apps with a certificate",
    "domain": "apps are served at http://APP.DOMAIN (a wildcard DNS record *.DOMAIN points here)",
    "scheduler": "docker-local or swarm",
    "stack_image": "the locally built base image (stack:build)",
    "log_level": "log level of serve (the journal; DATA_DIR/logs/pushdock.log always gets DEBUG)",
    "ready_timeout": "seconds a new web container has to pass its readiness check",
    "stop_timeout": "seconds between SIGTERM and SIGKILL when old containers retire",
    "lock_timeout": "seconds a push or command waits for another deploy of the same app",
    "max_push_bytes": "largest pack one push may send; 0 = unlimited",
    "release_timeout": "seconds a release-phase command may run",
    "build_memory": "memory cap of every build container (256m, 2g...); empty: half the host's memory",
}


@dataclass(frozen=True)
class Target:
    """Where the unit and the environment file go, and what systemctl should do after writing them."""

    unit_dir: Path = UNIT_DIR
    env_file: Path = ENV_FILE
    enable: bool = True
    start: bool = True

    @property
    def unit(self) -> Path:
        return self.unit_dir / UNIT_NAME

    def check(self) -> None:
        for what, path in (("--unit-dir", self.unit_dir), ("--env-file", self.env_file)):
            if not path.is_absolute():
                raise UsageError(f"{what} must be an absolute path, not {str(path)!r}")
        if self.unit_dir.exists() and not self.unit_dir.is_dir():
            raise UsageError(f"--unit-dir {self.unit_dir} is not a directory")
        if self.env_file.is_dir():
            raise UsageError(f"--env-file {self.env_file} is a directory, not a file")


Systemctl = Callable[[Sequence[str]], None]


def systemd_running() -> bool:
    return SYSTEMD_RUNNING.is_dir()


def systemctl(args: Sequence[str]) -> None:
    from pushdock import proc  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    proc.run(["systemctl", *args], timeout=120)


def executable() -> Path:
    """This install's `pushdock`: beside the running interpreter (the venv's bin, not resolved), else on PATH."""
    beside = Path(sys.executable).parent / "pushdock"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("pushdock")
    if found is None:
        raise PushdockError("cannot find the pushdock executable to run as the service",
                            hint="install pushdock into its virtualenv first (make setup)")
    return Path(found).absolute()


def render_unit(exe: Path, env_file: Path) -> str:
    """The unit file's text (checked by `systemd-analyze verify` in the tests)."""
    return f"""\
# Written by `pushdock service:install`: installing again overwrites this file.
# Settings belong in {env_file} (kept across reinstalls and uninstalls).
[Unit]
Description=pushdock: git push to deploy (SSH, HTTP, webhooks, the proxy's routes)
{_documentation()}After=docker.service network-online.target
Requires=docker.service
Wants=network-online.target

[Service]
Type=simple
# root: serve talks to the Docker socket, and the proxy it starts binds ports 80 and 443.
EnvironmentFile={env_file}
Environment=PATH={exe.parent}:{SYSTEM_PATH}
ExecStart={exe} serve
Restart=on-failure
RestartSec=3
# The proxy (nginx, caddy or traefik) that serve starts is a daemon of its own that must outlive serve,
# and so must a deploy or an SSH command still under way; they are in this unit's cgroup, so the default
# KillMode=control-group would kill them on stop and KillMode=mixed would SIGKILL them. `process` signals
# serve alone (SIGTERM: it stops listening and exits). The apps are Docker's (dockerd's cgroup), not ours.
# A restart finds the proxy still running, adopts it and reconciles; systemd notes it as left over.
KillMode=process
TimeoutStopSec=30
LimitNOFILE=65536
# Hardening that keeps what serve and its children need: writing the data dir, running builds and the
# proxy, the Docker socket. Not PrivateTmp: temp dirs of builds are handed to dockerd, which must see them.
# Not RestrictSUIDSGID: `stack:build` (debootstrap) installs setuid programs into the image it builds.
NoNewPrivileges=yes
ProtectSystem=full
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native

[Install]
WantedBy=multi-user.target
"""


def _documentation() -> str:
    doc = Path(__file__).resolve().parents[1] / "docs" / "install.md"
    return f"Documentation=file://{doc}\n" if doc.is_file() else ""


def render_env(settings: Settings, path: Path) -> str:
    """The environment file: every PUSHDOCK_ setting, commented with its default, except the ones the
    installer's environment set (and the data dir, always): the service then runs as the installer's CLI does."""
    lines = ["# pushdock's settings for `pushdock serve` under systemd (docs/settings.md).",
             "# Uncomment and edit, then: systemctl restart pushdock",
             "# The host CLI reads its own environment, not this file: to reach the same data dir and ports,",
             f"#   set -a; . {path}; set +a",
             ""]
    explicit = settings.model_fields_set | {"data_dir"}
    for name, field in type(settings).model_fields.items():
        var = f"PUSHDOCK_{name.upper()}"
        lines.append(f"# {MEANINGS.get(name, 'see docs/settings.md')}")
        if name in explicit:
            lines.append(f"{var}={_quote(_value(getattr(settings, name)))}")
        else:
            default = field.get_default(call_default_factory=True)
            lines.append(f"# {var}={_quote(_value(default))}")
    return "\n".join(lines) + "\n"


def _value(v: object) -> str:
    get = getattr(v, "get_secret_value", None)
    return str(get() if callable(get) else v)


def _quote(value: str) -> str:
    """A value as systemd's EnvironmentFile= (and a shell's `.`) read it back."""
    if value and all(c.isalnum() or c in "_./:@,+-=" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`") + '"'


def install(settings: Settings, target: Target, *, booted: bool, run: Systemctl = systemctl) -> list[str]:
    """Write the unit (always) and the environment file (only if absent); then, if systemd runs (`booted`),
    reload it and enable/start the unit as `target` says. Returns what was done, one line each."""
    target.check()
    exe = executable()
    said = []
    if target.env_file.exists():
        said.append(f"Kept {target.env_file}: it exists (your settings)")
    else:
        _write(target.env_file, render_env(settings, target.env_file), 0o600)
        said.append(f"Wrote {target.env_file} (0600): every setting, commented; edit it, then restart the service")
    try:
        _write(target.unit, render_unit(exe, target.env_file), 0o644)
    except PushdockError:
        if not said[0].startswith("Kept"):
            target.env_file.unlink()  # nothing half-done: the env file made just now goes too
        raise
    said.append(f"Wrote {target.unit} (runs {exe} serve)")
    if not booted:
        said.append(f"systemd is not running here: on the server, run `{MANUAL}`")
        return said
    run(["daemon-reload"])
    if target.enable:
        run(["enable", *(["--now"] if target.start else []), UNIT_NAME])
    elif target.start:
        run(["start", UNIT_NAME])
    said.append({(True, True): "Enabled and started pushdock", (True, False): "Enabled pushdock (not started)",
                 (False, True): "Started pushdock (not enabled at boot)",
                 (False, False): "Reloaded systemd (not enabled, not started)"}[(target.enable, target.start)])
    return said


def uninstall(settings: Settings, target: Target, *, booted: bool, run: Systemctl = systemctl) -> list[str]:
    """Stop and disable the service (when systemd runs), remove the unit; the data dir and env file stay."""
    target.check()
    said = []
    if not target.unit.exists():
        said.append(f"{target.unit} is not installed: nothing to remove")
    else:
        if booted:
            run(["disable", "--now", UNIT_NAME])
        try:
            target.unit.unlink()
        except OSError as e:
            raise PushdockError(f"cannot remove {target.unit}: {e.strerror}", hint="run as root") from None
        if booted:
            run(["daemon-reload"])
        said.append(f"Removed {target.unit}; the proxy and the apps keep running")
    said.append(f"Kept the data dir {settings.data_dir} and {target.env_file}: delete them to remove everything")
    return said


def _write(path: Path, text: str, mode: int) -> None:
    try:
        atomic_write(path, text, mode=mode)
    except OSError as e:
        raise PushdockError(f"cannot write {path}: {e.strerror}", hint="run as root") from None

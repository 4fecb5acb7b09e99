"""Settings from the environment (prefix PUSHDOCK_), built once per entry point and passed down."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pushdock")
    return Path.home() / ".local" / "share" / "pushdock"


class Settings(BaseSettings):
    """Every knob pushdock reads from its environment; documented in docs/settings.md."""

    model_config = SettingsConfigDict(env_prefix="PUSHDOCK_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    ssh_host: str = "0.0.0.0"
    ssh_port: int = 2222
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    proxy: str = "nginx"
    proxy_port: int = 80
    # HTTPS port of apps that have a certificate (certs:add / certs:generate).
    proxy_tls_port: int = 443
    # A Dockerfile app's EXPOSEd web port P is also served on the proxy's port P (`http:P:P`), as in Dokku.
    expose_ports: bool = True
    # nginx and caddy are routed to stable loopback addresses switched underneath by nftables (proxies/stable.py):
    # a redeploy reloads no proxy. Off: every upstream change is a reload.
    stable_upstreams: bool = True
    domain: str = "localhost"
    scheduler: str = "docker-local"
    stack_image: str = "pushdock/stack:bookworm"
    log_level: str = "INFO"
    # How long a web container may take to answer its readiness check.
    ready_timeout: float = 60.0
    # Grace period between SIGTERM and SIGKILL when old containers retire.
    stop_timeout: int = 10
    # How long a push waits for another deploy of the same app before giving up.
    lock_timeout: float = 600.0
    # Largest pack a single push may send (bytes); 0 means unlimited.
    max_push_bytes: int = 512 * 1024 * 1024
    # How long a release-phase command (Procfile `release:`, app.json predeploy/postdeploy) may run.
    release_timeout: float = 600.0
    # SSH sessions (one worker process each, ~45 MB) one key, and one client address, may hold at once; 0: no cap.
    ssh_max_sessions_per_key: int = 10
    ssh_max_sessions_per_host: int = 20
    # Workers of the SSH door and the API forked from a zygote serve starts (pushdock/zygote.py); off: spawned.
    warm_workers: bool = True
    # Seconds the HTTP door waits on a silent connection (no request yet, or a stalled body) before closing it.
    http_idle_timeout: float = 30.0
    # Memory cap of every build (e.g. 2g); empty: half the host's memory. `resource:limit APP --build` overrides.
    build_memory: str = ""
    # Extra CA bundle (PEM) the ACME client trusts for the ACME server's HTTPS: a test CA such as pebble's.
    acme_ca_bundle: Path | None = None
    # Python packages `plugin:install` may install into pushdock's environment (names, comma- or space-separated).
    # Set on the host only: an SSH admin may install from this list, never add to it.
    plugin_allow: str = ""


def as_env(settings: Settings) -> dict[str, str]:
    """The settings as PUSHDOCK_* variables, so a worker process sees exactly what its parent was given."""
    env = {}
    for name, value in settings.model_dump().items():
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if plain is not None:  # unset stays unset (str(None) would be a value)
            env[f"PUSHDOCK_{name.upper()}"] = str(plain)
    return env

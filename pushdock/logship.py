"""Log shipping (`logs:set APP|--global vector-sink URI`): an app's container output sent to a syslog or GELF
sink by the engine's own logging drivers.

Why the engine and not a shipper: Debian 12 packages no Vector or Fluent Bit; rsyslog would be a second
daemon to run, configure and keep alive for what dockerd already does per container (its `syslog` and
`gelf` drivers, UDP, TCP or TLS). Since Docker 20.10 the engine keeps a local copy of every container's
output beside a remote driver ("dual logging"), so `pushdock logs` keeps working. The driver is chosen
when a container is created: a change applies to new containers (the app restarts, zero downtime).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from pushdock.errors import UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.state import State

PROP = "vector-sink"  # Dokku's key
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,253}}\Z){LABEL}(?:\.{LABEL})*\Z")
# URI scheme -> (engine logging driver, the driver's address scheme)
SCHEMES = {
    "syslog": ("syslog", "udp"), "syslog+udp": ("syslog", "udp"), "syslog+tcp": ("syslog", "tcp"),
    "syslog+tls": ("syslog", "tcp+tls"), "gelf": ("gelf", "udp"), "gelf+udp": ("gelf", "udp"),
    "gelf+tcp": ("gelf", "tcp"),
}
SYSLOG_FORMATS = ("rfc5424", "rfc5424micro", "rfc3164")


@dataclass(frozen=True)
class Sink:
    uri: str
    driver: str
    address: str
    options: tuple[tuple[str, str], ...] = ()

    def log_config(self, app: str, process: str) -> dict[str, object]:
        """The engine's LogConfig for one container of `app`: its lines tagged APP.PROCESS."""
        config = dict(self.options)
        if self.driver == "syslog":
            config.update({"syslog-address": self.address, "tag": f"{app}.{process}"})
            config.setdefault("syslog-format", "rfc5424")
        else:
            config.update({"gelf-address": self.address, "tag": f"{app}.{process}",
                           "labels": "pushdock.app,pushdock.process"})
        return {"type": self.driver, "config": config}


def parse(uri: str) -> Sink:
    """A sink URI (`syslog://HOST:PORT`, `syslog+tcp://`, `syslog+tls://`, `gelf://`, `gelf+tcp://`), checked."""
    if len(uri) > 300 or any(c.isspace() for c in uri):
        raise UsageError("invalid vector-sink: one URI without spaces, e.g. syslog://logs.example.com:514")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        raise UsageError("HTTP sinks are not supported: logs are shipped by the engine's syslog and GELF drivers",
                         hint="use syslog://, syslog+tcp://, syslog+tls://, gelf:// or gelf+tcp:// (docs/logs.md)")
    if scheme not in SCHEMES:
        raise UsageError(f"invalid vector-sink scheme {scheme[:20]!r} (known: {', '.join(SCHEMES)})")
    driver, transport = SCHEMES[scheme]
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UsageError("invalid vector-sink: the port must be a number from 1 to 65535") from None
    if parts.username or parts.password or parts.path not in ("", "/") or parts.fragment:
        raise UsageError(f"invalid vector-sink: {scheme}://HOST:PORT[?format=...] takes no user, path or fragment")
    if not host or not _valid_host(host):
        raise UsageError("invalid vector-sink: a host name or IP address is needed")
    if not port:
        raise UsageError(f"invalid vector-sink: give the port ({scheme}://{host}:PORT)")
    options: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key == "format" and driver == "syslog":
            if value not in SYSLOG_FORMATS:
                raise UsageError(f"invalid syslog format {value[:20]!r} (known: {', '.join(SYSLOG_FORMATS)})")
            options.append(("syslog-format", value))
        else:
            raise UsageError(f"invalid vector-sink option {key[:20]!r}" + (" (known: format)" if driver == "syslog"
                                                                           else " (GELF takes none)"))
    host_part = f"[{host}]" if ":" in host else host
    return Sink(uri, driver, f"{transport}://{host_part}:{port}", tuple(options))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME.match(host))


def stored(state: State, scope: str) -> str:
    """The sink URI set for an app or `--global` ("" if none)."""
    return state.get("logs", scope, PROP) or ""


def computed(state: State, app: str) -> str:
    """The sink an app's new containers use: its own, else the global one."""
    return stored(state, app) or stored(state, GLOBAL)


def store(state: State, scope: str, uri: str) -> None:
    if uri:
        state.set("logs", scope, PROP, uri)
    else:
        state.delete("logs", scope, PROP)


def log_config(state: State, app: str, process: str) -> dict[str, object] | None:
    """The engine LogConfig for a new container of the app (None: the engine's default driver)."""
    uri = computed(state, app)
    if not uri:
        return None
    try:
        return parse(uri).log_config(app, process)
    except UsageError:  # stored by an older rule: the container starts, logging locally, never fails for it
        return None

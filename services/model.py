"""Service records: what exists, its credentials (0600) and the apps linked to it.

Records live in the data dir's tree of services (`State.service_records(KIND)`: DATA_DIR/services/KIND/NAME/),
apart from the apps' properties, so an app named like a service never takes them along when it is destroyed,
renamed or cloned: `record` (created, links: [{app, var}]) and `credentials` (the generated password, mode 0600).
A service name follows the app-name rule (a DNS label): it is a host name on the service's network.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pushdock.errors import Conflict, Forbidden, NotFound, UsageError
from pushdock.state import validate_app_name, validate_env_key

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Datastore
    from pushdock.state import Records, State

RECORD, CREDENTIALS = "record", "credentials"
ALIAS = re.compile(r"^[A-Z][A-Z0-9_]{0,62}\Z")


@dataclass(frozen=True)
class Link:
    app: str
    var: str  # DATABASE_URL, or ALIAS_URL


@dataclass(frozen=True)
class Service:
    kind: str
    name: str
    created: float
    links: tuple[Link, ...] = field(default_factory=tuple)
    exposed: tuple[str, int] | None = None  # (address, host port) it is published on (`KIND:expose`), else None
    # the app copy (a preview) it was made for by `clone-app-services`, written with the record before anything
    # runs: a copy whose maker died before it could say so is still found and destroyed with that app
    made_for: str | None = None

    def to_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"kind": self.kind, "name": self.name, "created": self.created,
                               "links": [{"app": link.app, "var": link.var} for link in self.links]}
        if self.exposed:
            raw["exposed"] = {"address": self.exposed[0], "port": self.exposed[1]}
        if self.made_for:
            raw["made_for"] = self.made_for
        return raw


def plugin(kind: str) -> str:
    """The name of the kind's global lock (`State.global_lock`)."""
    return f"service-{kind}"


def records(state: State, kind: str) -> Records:
    """Where the records of services of `kind` are kept."""
    return state.service_records(kind)


def check_name(kind: str, name: str) -> str:
    try:
        return validate_app_name(name)
    except UsageError:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise UsageError(f"invalid {kind} service name {shown!r}: use 1-63 lowercase letters, digits and '-', "
                         "starting and ending with a letter or digit") from None


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias) or alias.endswith("_URL"):
        raise UsageError(f"invalid alias {alias[:60]!r}: use uppercase letters, digits and '_' (the variable is "
                         "ALIAS_URL), starting with a letter")
    return alias


def parse_expose(kind: str, value: str | None) -> tuple[str, int | None]:
    """`[ADDRESS:]HOST_PORT` (IPv6 in brackets) as (address, port); the address defaults to 127.0.0.1, the port
    (None) to a free one."""
    if value is None:
        return "127.0.0.1", None
    address, sep, port = value.rpartition(":")
    bracketed = address.startswith("[") and address.endswith("]")
    address = address[1:-1] if bracketed else address if sep else "127.0.0.1"
    try:
        ip = ipaddress.ip_address(address)
        number = int(port, 10)
    except ValueError:
        ip, number = None, 0
    if ip is not None and ip.version == 6 and not bracketed:
        ip = None  # `::1:5432` is an address too: IPv6 goes in brackets
    if ip is None or not 1 <= number <= 65535 or not port.isdigit():
        raise UsageError(f"{kind}:expose takes [ADDRESS:]HOST_PORT (an IP address and a port 1-65535), not "
                         f"{value[:60]!r}")
    return str(ip), number


def _of(kind: str, name: str, raw: dict[str, Any]) -> Service:
    links = tuple(Link(str(x["app"]), str(x["var"])) for x in raw.get("links", []))
    exposed = raw.get("exposed")
    return Service(kind, name, float(raw.get("created", 0)), links,
                   (str(exposed["address"]), int(exposed["port"])) if exposed else None,
                   str(raw["made_for"]) if raw.get("made_for") else None)


def find(state: State, kind: str, name: str) -> Service | None:
    raw = records(state, kind).get_json(check_name(kind, name), RECORD)
    return None if raw is None else _of(kind, name, raw)


def get(state: State, kind: str, name: str) -> Service:
    found = find(state, kind, name)
    if found is None:
        raise NotFound(f"no {kind} service {name} (create it with {kind}:create {name})")
    return found


def all_of(state: State, kind: str) -> list[Service]:
    return [s for s in (find(state, kind, n) for n in records(state, kind).names()) if s is not None]


def save(state: State, service: Service) -> None:
    raw = service.to_dict()
    del raw["kind"], raw["name"]
    records(state, service.kind).set_json(service.name, RECORD, raw)


def create(state: State, kind: str, name: str, *, made_for: str | None = None) -> tuple[Service, str]:
    """A new record and its generated password (Conflict if the name is taken); `made_for`: the app copy it is
    made for (Service.made_for)."""
    if find(state, kind, name) is not None:
        raise Conflict(f"{kind} service {name} exists already")
    password = secrets.token_urlsafe(24)  # URL-safe: it goes into DATABASE_URL unquoted
    records(state, kind).set_json(name, CREDENTIALS, {"password": password}, secret=True)
    service = Service(kind, name, time.time(), made_for=made_for)
    save(state, service)
    return service, password


def password(state: State, service: Service) -> str:
    raw = records(state, service.kind).get_json(service.name, CREDENTIALS, {}) or {}
    if not raw.get("password"):
        raise NotFound(f"the credentials of {service.kind} service {service.name} are missing")
    return str(raw["password"])


def forget(state: State, service: Service) -> None:
    records(state, service.kind).forget(service.name)


def linked_to(state: State, app: str, kinds: list[str]) -> list[Service]:
    """Every service (of these kinds) linked to `app`."""
    return [s for kind in kinds for s in all_of(state, kind) if any(link.app == app for link in s.links)]


def may_see(ctx: Context, service: Service) -> bool:
    """Admins see every service; a deployer those linked to one of its apps."""
    who = ctx.identity
    return who.role == "admin" or any(who.may_use(link.app) for link in service.links)


def visible(ctx: Context, kind: str, name: str) -> Service:
    """The service if the caller may see it; NotFound for both unknown and not-yours (names are not leaked)."""
    found = find(ctx.state, kind, name)
    if found is None or not may_see(ctx, found):
        if found is not None:
            raise Forbidden(f"{ctx.identity.name} ({ctx.identity.role}) may not use {kind} service {name}: it is "
                            "linked to none of its apps")
        raise NotFound(f"no {kind} service {name} (create it with {kind}:create {name})")
    return found


def choose_var(ds: Datastore, service: Service, env: dict[str, str], alias: str | None) -> str:
    """ALIAS_URL (default DATABASE_URL / REDIS_URL); if the app has it already (a second database), a
    variable of this service's own: PUSHDOCK_KIND_NAME_URL (Dokku's DOKKU_POSTGRES_COLOR_URL). An explicit
    --alias that is taken is a Conflict."""
    var = validate_env_key(f"{check_alias(alias or ds.alias)}_URL")
    if var in env:
        if alias is not None:
            raise Conflict(f"{var} is already set on the app: pick another --alias")
        var = f"PUSHDOCK_{ds.kind.upper()}_{service.name.upper().replace('-', '_')}_URL"
    return var

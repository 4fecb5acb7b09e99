"""`KIND:expose` / `KIND:unexpose`: a service published on a host port (127.0.0.1 unless an address is given).

A container's published ports are fixed when it is made, so a change records the new address in the service's
record and recreates the container (the data is in the volume); if that fails, the old record and container
come back.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import TYPE_CHECKING

from pushdock.errors import Conflict
from services import engine, model

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Datastore


def expose(ctx: Context, ds: Datastore, name: str, address: str, port: int | None) -> str:
    """Publish on address:port (a free port if None); how it is shown."""
    kind = ds.kind
    with ctx.state.global_lock(model.plugin(kind)):
        service = model.get(ctx.state, kind, name)
        if service.exposed:
            raise Conflict(f"{kind} service {name} is exposed on {shown(service.exposed)} already: "
                           f"{kind}:unexpose it first")
        where = (address, port or free_port(address))
        check_free(*where)
        change(ctx, ds, service, replace(service, exposed=where))
    return shown(where)


def unexpose(ctx: Context, ds: Datastore, name: str) -> None:
    with ctx.state.global_lock(model.plugin(ds.kind)):
        service = model.get(ctx.state, ds.kind, name)
        if not service.exposed:
            raise Conflict(f"{ds.kind} service {name} is not exposed")
        change(ctx, ds, service, replace(service, exposed=None))


def shown(exposed: tuple[str, int]) -> str:
    address, port = exposed
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def check_free(address: str, port: int) -> None:
    """A clear error before the engine's: the address is not this host's, or the port is taken."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError as e:
            raise Conflict(f"cannot publish on {shown((address, port))}: {e.strerror or e}") from None


def change(ctx: Context, ds: Datastore, before: model.Service, after: model.Service) -> None:
    """Record `after` and recreate the container with its port; if that fails, put `before` back."""
    password = model.password(ctx.state, before)
    model.save(ctx.state, after)
    try:
        engine.recreate(ctx, ds, after, password)
    except BaseException:
        model.save(ctx.state, before)
        engine.recreate(ctx, ds, before, password)
        raise
    ctx.event(f"{before.kind}:expose", service=before.name,
              exposed=shown(after.exposed) if after.exposed else "no")



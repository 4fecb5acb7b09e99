"""Schema versions of the data dir: an older one is migrated when it is opened, a newer one is refused.

DATA_DIR/VERSION holds the version of the last migration applied; no file in a data dir with contents means
0, the layout of every pushdock before versions existed; a data dir that is new (absent or empty) is made at
the latest version. Every entry point opens the data dir through `Context.state`, which calls
`ensure_current`: one small read when the dir is current. Otherwise the steps of MIGRATIONS run in order under
a lock, and VERSION is written after each step succeeded, so an interrupted migration resumes at the step that
did not finish; every step is idempotent, so running one again changes nothing. A data dir newer than this code
is refused before anything is written: a rollback of pushdock needs the backup made before the upgrade.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pushdock.errors import PushdockError

if TYPE_CHECKING:
    from pushdock.state import Identity, State


@dataclass(frozen=True)
class Migration:
    """`step` brings a data dir of version `version - 1` to `version`; it must be idempotent."""

    version: int
    name: str
    step: Callable[[State], None]


def _stamp(state: State) -> None:
    """The layout before versions is version 1 as it is: the apps, releases, keys, tokens, settings stay put."""


def _private_data_dir(state: State) -> None:
    """Secrets were 0600 file by file, but the data dir and what is in it were 0755/0644 (the umask's): every local
    user could read the repos, the deploy logs (the build output of private repos), `logs/pushdock.log`,
    events.log and the app properties, and list the apps. Now the data dir is 0711 (nginx's unprivileged workers
    must still traverse it to their temp dir) and everything at its top but nginx's prefix 0700/0600. Containers
    are unaffected: dockerd, as root, makes their bind mounts."""
    state.make_private()


def _service_records_out_of_app_tree(state: State) -> None:
    """Service records were properties of plugin `service-KIND` under data/, next to the apps' own
    (data/PLUGIN/APP): `apps:destroy X` deleted the record and credentials of a service named X (its container and
    volume kept running, orphaned), `apps:rename`/`apps:clone` moved or copied them. They move to
    DATA_DIR/services/KIND/NAME, which no app operation reaches."""
    state.move_legacy_service_records()


# Order is data: a data dir at version N runs every step after N, in this order.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "stamp the layout before schema versions", _stamp),
    Migration(2, "make the data dir private (0711: not listable by other users)", _private_data_dir),
    Migration(3, "move service records out of the apps' tree (data/service-KIND/NAME -> services/KIND/NAME)",
              _service_records_out_of_app_tree),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def ensure_current(state: State, who: Identity | None = None) -> None:
    """Migrate an older data dir to SCHEMA_VERSION; refuse a newer one (PushdockError, nothing written)."""
    version = state.schema_version()
    if version == SCHEMA_VERSION:
        return
    _refuse_newer(state, version, SCHEMA_VERSION)
    migrate(state, who=who)


def migrate(state: State, migrations: Sequence[Migration] = MIGRATIONS, *,
            who: Identity | None = None) -> list[Migration]:
    """Run the steps after the data dir's version, each followed by writing its version; return those run.

    Each step is an audit event (`data:migrate`, its version and name), recorded as done by `who`.
    """
    latest = migrations[-1].version if migrations else 0
    new = state.is_empty()  # nothing to migrate: made at the latest version
    state.create_root()  # a data dir made now is private from its first moment (the lock's file is in it)
    with state.migration_lock():
        version = state.schema_version()  # another process may have migrated while we waited
        _refuse_newer(state, version, latest)
        if new and version == 0:
            state.make_private()
            state.set_schema_version(latest)
            return []
        done = []
        for m in migrations:
            if m.version <= version:
                continue
            started = time.time()
            try:
                m.step(state)
            except OSError as e:
                raise PushdockError(f"migrating the data dir {state.root} to schema version {m.version} "
                                    f"({m.name}) failed: {e}") from e
            state.set_schema_version(m.version)
            done.append(m)
            state.append_event({"time": started, "who": who.name if who else "pushdock",
                                "door": who.door if who else "cli", "app": None, "action": "data:migrate",
                                "result": "ok", "version": m.version, "step": m.name,
                                "duration": round(time.time() - started, 3)})
        return done


def _refuse_newer(state: State, version: int, known: int) -> None:
    if version > known:
        raise PushdockError(
            f"the data dir {state.root} has schema version {version}, newer than this pushdock knows ({known}): "
            "run the newer pushdock, or restore the backup made before the upgrade")

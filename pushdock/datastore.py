"""What a kind of service supplies: its image, how its container starts, its URL and its client programs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

# A service's files in its image build context: {path: (content, mode)}.
BuildFiles = Mapping[str, tuple[bytes, int]]


class Datastore(Protocol):
    kind: str           # the command group and the kind in records: `postgres`
    title: str          # `PostgreSQL 15`
    image: str          # the local image tag: pushdock/service-postgres:15
    alias: str          # the default variable's stem: DATABASE -> DATABASE_URL
    port: int           # the port it listens on, inside its private network only
    data_path: str      # where the data volume is mounted in its container
    stop_signal: str    # what stops it cleanly and soon (postgres: SIGINT, a fast shutdown)

    def build_files(self) -> BuildFiles:
        """The image's build context: a Dockerfile (FROM the stack image) and whatever it copies."""

    def environment(self, name: str, password: str) -> dict[str, str]:
        """The container's environment (it reads the generated password from here on first start)."""

    def url(self, name: str, password: str, host: str) -> str:
        """What a linked app gets in its URL variable."""

    def ready_argv(self, name: str) -> list[str]:
        """A command run in the container that exits 0 once the service accepts connections."""

    def connect_argv(self, name: str) -> list[str]:
        """The interactive client (psql, redis-cli), connected as the service's owner."""

    def export_argv(self, name: str) -> list[str]:
        """Writes a dump of the data on stdout."""

    def import_argv(self, name: str) -> list[str]:
        """Reads a dump (as export writes it) on stdin into the service; [] if the kind cannot."""


class Backupable(Datastore, Protocol):
    """A kind with backups (services/backups.py does the rest: files, verification, schedules, retention)."""

    backup_suffix: str     # the file's ending: `.dump` (pg_dump -Fc), `.rdb.gz`
    counted: str           # what a count is of, for messages: `rows`, `keys`
    restore_offline: bool  # restore_argv runs with the service stopped, in a helper container on its volume

    def backup_argv(self, name: str) -> list[str]:
        """Writes the backup file (compressed) on stdout, in the service's container."""

    def restore_argv(self, name: str) -> list[str]:
        """Reads a backup file (or an export) on stdin into the service's data; non-zero exit if it is bad."""

    def counts_argv(self, name: str) -> list[str]:
        """Prints what `parse_counts` reads: the rows of every table, the keys of every database."""

    def parse_counts(self, output: str) -> dict[str, int]:
        """{table or database: count} from counts_argv's output."""

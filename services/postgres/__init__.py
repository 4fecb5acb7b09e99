"""PostgreSQL 15 from Debian's packages (postgresql-15), as a service."""

from __future__ import annotations

from importlib import resources

from pushdock.datastore import BuildFiles

BIN = "/usr/lib/postgresql/15/bin"
# Exact row counts of every user table, one `schema.table count` line each (query_to_xml runs one count per table).
COUNTS_SQL = (
    "select table_schema || '.' || table_name || ' ' || (xpath('/row/c/text()', query_to_xml(format("
    "'select count(*) as c from %I.%I', table_schema, table_name), false, true, '')))[1]::text "
    "from information_schema.tables where table_type = 'BASE TABLE' "
    "and table_schema not in ('pg_catalog', 'information_schema') order by 1"
)
DOCKERFILE = b"""FROM pushdock/stack:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/postgresql/data /var/run/postgresql \\
 && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
COPY start /usr/local/bin/pushdock-service-start
USER postgres
ENTRYPOINT ["/usr/local/bin/pushdock-service-start"]
"""


class Postgres:
    kind = "postgres"
    title = "PostgreSQL 15"
    image = "pushdock/service-postgres:15"
    alias = "DATABASE"
    port = 5432
    data_path = "/var/lib/postgresql/data"
    stop_signal = "SIGINT"
    backup_suffix = ".dump"  # pg_dump's custom format: compressed
    counted = "rows"
    restore_offline = False  # pg_restore into the running server

    def build_files(self) -> BuildFiles:
        start = resources.files(__package__).joinpath("start").read_bytes()
        return {"Dockerfile": (DOCKERFILE, 0o644), "start": (start, 0o755)}

    def environment(self, name: str, password: str) -> dict[str, str]:
        return {"POSTGRES_DB": name, "POSTGRES_PASSWORD": password, "PGDATA": f"{self.data_path}/pg"}

    def url(self, name: str, password: str, host: str) -> str:
        return f"postgres://postgres:{password}@{host}:{self.port}/{name}"

    def ready_argv(self, name: str) -> list[str]:
        return [f"{BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", name]

    def connect_argv(self, name: str) -> list[str]:
        # no pager: behind `ssh -tt` without a terminal the size is 0x0 and psql would page every answer
        return ["psql", "-U", "postgres", "-d", name, "-P", "pager=off"]

    def export_argv(self, name: str) -> list[str]:
        return ["pg_dump", "-U", "postgres", "-Fc", "--no-owner", "--no-acl", name]

    def import_argv(self, name: str) -> list[str]:
        return ["pg_restore", "-U", "postgres", "-d", name, "--no-owner", "--no-acl", "--clean", "--if-exists",
                "--exit-on-error"]

    def backup_argv(self, name: str) -> list[str]:
        return self.export_argv(name)

    def restore_argv(self, name: str) -> list[str]:
        return self.import_argv(name)

    def counts_argv(self, name: str) -> list[str]:
        return ["psql", "-U", "postgres", "-d", name, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", COUNTS_SQL]

    def parse_counts(self, output: str) -> dict[str, int]:
        pairs = (line.rsplit(" ", 1) for line in output.splitlines() if line.strip())
        return {table: int(n) for table, n in pairs}

"""PostgreSQL 15 from Debian's packages (postgresql-15), as a service."""

from __future__ import annotations

from importlib import resources

from pushdock.datastore import BuildFiles

BIN = "/usr/lib/postgresql/15/bin"
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

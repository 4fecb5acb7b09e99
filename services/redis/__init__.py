"""Redis 7 from Debian's packages (redis-server), as a password-protected service."""

from __future__ import annotations

from pushdock.datastore import BuildFiles

DOCKERFILE = b"""FROM pushdock/stack:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/redis/data && chown redis:redis /var/lib/redis/data
COPY start /usr/local/bin/pushdock-service-start
USER redis
ENTRYPOINT ["/usr/local/bin/pushdock-service-start"]
"""
START = b"""#!/bin/sh
# The password reaches redis-server through its config on stdin, never its command line (ps shows that).
set -eu
printf 'requirepass %s\\n' "$REDIS_PASSWORD" > /var/lib/redis/data/.auth.conf
chmod 600 /var/lib/redis/data/.auth.conf
unset REDIS_PASSWORD
exec redis-server --bind 0.0.0.0 --protected-mode no --dir /var/lib/redis/data --appendonly yes \\
    --include /var/lib/redis/data/.auth.conf
"""


class Redis:
    kind = "redis"
    title = "Redis 7"
    image = "pushdock/service-redis:7"
    alias = "REDIS"
    port = 6379
    data_path = "/var/lib/redis/data"
    stop_signal = "SIGTERM"

    def build_files(self) -> BuildFiles:
        return {"Dockerfile": (DOCKERFILE, 0o644), "start": (START, 0o755)}

    def environment(self, name: str, password: str) -> dict[str, str]:
        return {"REDIS_PASSWORD": password}

    def url(self, name: str, password: str, host: str) -> str:
        return f"redis://:{password}@{host}:{self.port}"

    def _cli(self) -> list[str]:
        # REDISCLI_AUTH comes from the auth file, so the password is on no command line
        return ["sh", "-c", 'REDISCLI_AUTH="$(sed -n "s/^requirepass //p" /var/lib/redis/data/.auth.conf)" '
                            'exec redis-cli "$@"', "redis-cli"]

    def ready_argv(self, name: str) -> list[str]:
        return [*self._cli(), "ping"]

    def connect_argv(self, name: str) -> list[str]:
        return self._cli()

    def export_argv(self, name: str) -> list[str]:
        return [*self._cli(), "--rdb", "/dev/stdout"]

    def import_argv(self, name: str) -> list[str]:
        return []  # an RDB file is loaded at start, not streamed into a running server: not supported yet

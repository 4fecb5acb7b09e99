"""Redis 7 from Debian's packages (redis-server), as a password-protected service."""

from __future__ import annotations

import re

from pushdock.datastore import BuildFiles

DATA = "/var/lib/redis/data"
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
# An export: an RDB snapshot taken over the replication protocol (redis-cli --rdb, whose chatter is shown only if
# it fails); a backup is the same, gzipped.
EXPORT = """set -eu
f=$(mktemp)
trap 'rm -f "$f" "$f.log"' EXIT
if ! redis-cli --rdb "$f" >"$f.log" 2>&1; then tail -n1 "$f.log" >&2; exit 1; fi
%s "$f"
"""
# A restore, with the server stopped, on its volume: the snapshot (gzipped or not) is checked, then loaded by a
# redis-server of its own (socket only) that turns the append-only file on, which rewrites it from memory: at its
# next start the service loads that file. Redis 7.0 ignores dump.rdb while the append-only file is on.
RESTORE = f"""set -eu
cd {DATA}
rm -f restore.rdb
gzip -dcf > restore.rdb
if ! out=$(redis-check-rdb restore.rdb 2>&1); then
    echo "not a valid RDB snapshot: $(printf '%s' "$out" | sed -n '/RDB ERROR DETECTED/{{n;p;q}}' | cut -c1-160)" >&2
    rm -f restore.rdb
    exit 1
fi
rm -rf appendonlydir dump.rdb
mv restore.rdb dump.rdb
sock=$(mktemp -u)
redis-server --port 0 --unixsocket "$sock" --dir {DATA} --dbfilename dump.rdb --appendonly no \\
    --daemonize yes --logfile {DATA}/restore.log
i=0
until [ "$(redis-cli -s "$sock" ping 2>/dev/null)" = PONG ]; do
    i=$((i+1)); [ $i -lt 600 ] || {{ echo "the snapshot did not load: $(tail -n1 restore.log)" >&2; exit 1; }}
    sleep 0.1
done
redis-cli -s "$sock" config set appendonly yes >/dev/null
until redis-cli -s "$sock" info persistence | grep -q '^aof_rewrite_in_progress:0' \\
   && redis-cli -s "$sock" info persistence | grep -q '^aof_rewrite_scheduled:0' \\
   && [ -d appendonlydir ]; do
    sleep 0.1
done
redis-cli -s "$sock" shutdown >/dev/null 2>&1 || true
while [ -S "$sock" ]; do sleep 0.1; done
rm -f restore.log
"""
KEYSPACE = re.compile(r"^(db\d+):keys=(\d+)", re.M)


class Redis:
    kind = "redis"
    title = "Redis 7"
    image = "pushdock/service-redis:7"
    alias = "REDIS"
    port = 6379
    data_path = DATA
    stop_signal = "SIGTERM"
    backup_suffix = ".rdb.gz"
    counted = "keys"
    restore_offline = True  # an RDB file is loaded at start, not streamed into a running server

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

    def _sh(self, script: str) -> list[str]:
        return ["sh", "-c", f'export REDISCLI_AUTH="$(sed -n "s/^requirepass //p" {DATA}/.auth.conf)"\n{script}']

    def ready_argv(self, name: str) -> list[str]:
        return [*self._cli(), "ping"]

    def connect_argv(self, name: str) -> list[str]:
        return self._cli()

    def export_argv(self, name: str) -> list[str]:
        return self._sh(EXPORT % "cat")

    def import_argv(self, name: str) -> list[str]:
        return []  # not into a running server: commands.py restores it offline (restore_argv) instead

    def backup_argv(self, name: str) -> list[str]:
        return self._sh(EXPORT % "gzip -c")

    def restore_argv(self, name: str) -> list[str]:
        return ["sh", "-c", RESTORE]

    def counts_argv(self, name: str) -> list[str]:
        return [*self._cli(), "info", "keyspace"]

    def parse_counts(self, output: str) -> dict[str, int]:
        return {db: int(n) for db, n in KEYSPACE.findall(output)}

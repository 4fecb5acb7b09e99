"""Services: `postgres:create` time (the image built already), link-to-live time (`postgres:link` starting to the
app's new release serving with DATABASE_URL), and `postgres:backup --verify` time for ~100 MB of rows (the dump,
then its restore into a throwaway container and the per-table row counts compared). Also redis' backup --verify
of a snapshot of 100k keys, for comparison. No targets in issue 16: the figures are recorded."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import write_section
from tests.harness import Server, unique

CREATES = 3
LINKS = 3
ROWS = 100_000  # ~1 KB of random hex each: ~100 MB of table
FILL = (f"create table big (id int primary key, body text);"
        f"insert into big select g, (select string_agg(md5(random()::text || g || x), '') "
        f"from generate_series(1, 31) x) from generate_series(1, {ROWS}) g;"
        "select pg_total_relation_size('big');")


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def creates(srv: Server) -> list[float]:
    srv.cli("postgres:create", unique("warm"), timeout=900)  # builds the image if this machine has none yet
    return [timed(lambda: srv.cli("postgres:create", unique("pgb"), timeout=300)) for _ in range(CREATES)]


def link_to_live(srv: Server) -> list[float]:
    """Link, wait until the app reads DATABASE_URL's table (the release's containers on the service network)."""
    app, db = unique("lnk"), unique("lnkdb")
    srv.cli("postgres:create", db, timeout=300)
    work = srv.app_repo(app, sample="postgres-web")
    assert srv.push(work, app).returncode == 0, "push failed"
    out = []
    for _ in range(LINKS):
        assert srv.get(app, "/read")[0] == 500  # no DATABASE_URL
        t0 = time.monotonic()
        srv.ssh("postgres:link", db, app)
        while srv.get(app, "/read")[0] != 200:
            time.sleep(0.05)
        out.append(time.monotonic() - t0)
        srv.ssh("postgres:unlink", db, app)
    return out


def backup_verify(srv: Server) -> tuple[float, int, int, float]:
    """(seconds, table bytes, dump bytes, seconds to fill)"""
    db = unique("bigdb")
    srv.cli("postgres:create", db, timeout=300)
    t0 = time.monotonic()
    out = srv.cli("postgres:connect", db, input=FILL, timeout=900).stdout
    size = int([word for word in out.split() if word.isdigit()][-1])  # the last select's one value
    filled = time.monotonic() - t0
    took = timed(lambda: srv.cli("postgres:backup", db, "--verify", timeout=1800))
    made = json.loads(srv.cli("postgres:backups", db, "--format", "json").stdout)[-1]
    assert made["verified"] == "yes", made
    return took, size, int(made["size"]), filled


def redis_backup_verify(srv: Server, keys: int = 100_000) -> tuple[float, int]:
    rd = unique("bigrd")
    srv.cli("redis:create", rd, timeout=900)
    srv.cli("redis:connect", rd, input=f"eval \"for i=1,{keys} do redis.call('set', 'k'..i, string.rep('v', 100)) "
                                       "end\" 0\n", timeout=300)
    took = timed(lambda: srv.cli("redis:backup", rd, "--verify", timeout=600))
    made = json.loads(srv.cli("redis:backups", rd, "--format", "json").stdout)[-1]
    assert made["verified"] == "yes", made
    return took, int(made["size"])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pushdock-bench-") as tmp:
        srv = Server(Path(tmp)).start()
        try:
            srv.add_key()
            create = creates(srv)
            link = link_to_live(srv)
            backup, table, dump, filled = backup_verify(srv)
            rbackup, rsize = redis_backup_verify(srv)
        finally:
            srv.stop()
    med = statistics.median
    mb = 1024 * 1024
    lines = [
        "| measure | median | min | max |",
        "|---|---|---|---|",
        f"| `postgres:create` ({CREATES} runs, image built) | {med(create):.2f} s | {min(create):.2f} s "
        f"| {max(create):.2f} s |",
        f"| link-to-live: `postgres:link` to the new release serving with DATABASE_URL ({LINKS} runs) "
        f"| {med(link):.2f} s | {min(link):.2f} s | {max(link):.2f} s |",
        f"| `postgres:backup --verify`, {ROWS} rows, {table / mb:.0f} MB table, {dump / mb:.0f} MB dump "
        f"| {backup:.1f} s | – | – |",
        f"| `redis:backup --verify`, 100000 keys, {rsize / mb:.1f} MB gzipped RDB | {rbackup:.1f} s | – | – |",
    ]
    body = "\n".join(lines) + (
        "\n\nA `pushdock serve` of its own, over SSH for link (the command a user runs). link-to-live runs from "
        "the start of `postgres:link` (a new release of tests/apps/postgres-web, the zero-downtime swap) until a "
        "GET through nginx reads the table; the service is unlinked between runs. The backup is `pg_dump -Fc` "
        "streamed into the data dir, then restored into a throwaway container and every table's row count "
        f"compared. The table was filled with random hex by one INSERT in {filled:.0f} s (not counted).\n"
        f"\nRaw create times (s): {', '.join(f'{t:.2f}' for t in create)}; "
        f"link-to-live (s): {', '.join(f'{t:.2f}' for t in link)}\n")
    print(body)
    write_section("bench/services.py", body)


if __name__ == "__main__":
    main()

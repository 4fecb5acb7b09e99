"""A buildpack app with drivers from PyPI (tests/e2e/test_service_data.py, bench/services.py): psycopg talks to
DATABASE_URL, redis-py to REDIS_URL. /write?TEXT inserts a row, /read lists the rows, /count counts them,
/set?KEY=VALUE and /get?KEY use Redis, /env/KEY shows a variable's name is set (never its value)."""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import psycopg
import redis

BODY = open(os.path.join(os.path.dirname(__file__), "body.txt")).read().strip()


def sql(query, *args):
    with psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=10) as conn:
        conn.execute("create table if not exists notes (t text)")
        rows = conn.execute(query, args).fetchall() if query.startswith("select") else conn.execute(query, args)
        return rows if isinstance(rows, list) else []


def cache():
    return redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10, decode_responses=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        query = unquote(query)
        status, text = 200, BODY
        try:
            if path == "/write":
                sql("insert into notes values (%s)", query)
                text = "written"
            elif path == "/read":
                text = ",".join(r[0] for r in sql("select t from notes order by t"))
            elif path == "/set":
                key, _, value = query.partition("=")
                cache().set(key, value)
                text = "set"
            elif path == "/get":
                text = cache().get(query) or ""
            elif path.startswith("/env/"):
                text = "set" if os.environ.get(path[5:]) else "unset"
        except Exception as e:  # the test reads the error class in the body
            status, text = 500, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        data = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.command, self.path))


srv = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Handler)
srv.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
srv.serve_forever()

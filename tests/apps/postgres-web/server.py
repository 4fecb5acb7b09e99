"""Sample app for the services tests: /write?TEXT inserts a row into DATABASE_URL's `notes`, /read lists them."""

import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

BODY = open(os.path.join(os.path.dirname(__file__), "body.txt")).read().strip()


def psql(sql, **variables):
    argv = ["psql", "-qAt", "-v", "ON_ERROR_STOP=1", os.environ["DATABASE_URL"]]
    for k, v in variables.items():
        argv += ["-v", f"{k}={v}"]
    cp = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=20)
    if cp.returncode != 0:
        raise OSError(cp.stderr.strip())
    return cp.stdout.strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        status, text = 200, BODY
        try:
            if path == "/write":
                psql("insert into notes values (:'t');", t=unquote(query))
                text = "written"
            elif path == "/read":
                text = psql("select t from notes order by t;").replace("\n", ",")
        except (OSError, KeyError) as e:
            status, text = 500, f"{type(e).__name__}: {e}"
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

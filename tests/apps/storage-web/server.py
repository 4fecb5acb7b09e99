"""Sample app for the storage tests: /write/NAME?TEXT writes /data/NAME, /read/NAME reads it (404 if missing)."""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

DATA = "/data"
BODY = open(os.path.join(os.path.dirname(__file__), "body.txt")).read().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        status, text = 200, BODY
        try:
            if path.startswith("/write/"):
                with open(os.path.join(DATA, os.path.basename(path)), "w") as f:
                    f.write(unquote(query) + "\n")
                text = "written"
            elif path.startswith("/read/"):
                with open(os.path.join(DATA, os.path.basename(path))) as f:
                    text = f.read().strip()
        except OSError as e:
            status, text = 404, f"{type(e).__name__}: {e.strerror}"
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

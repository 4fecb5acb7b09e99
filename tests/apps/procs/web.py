"""A stdlib web app: `/` names the release, `/file/NAME` serves a file of /app, `/env/NAME` a variable."""

import http.server
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = 200, f"procs {os.environ.get('PUSHDOCK_RELEASE')}"
        if self.path.startswith("/file/"):
            path = os.path.join(HERE, os.path.basename(self.path))
            status, body = (200, open(path).read().strip()) if os.path.exists(path) else (404, "no such file")
        elif self.path.startswith("/env/"):
            value = os.environ.get(self.path[len("/env/"):])
            status, body = (404, "unset") if value is None else (200, value)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()

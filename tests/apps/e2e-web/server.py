"""Sample web app for pushdock's end-to-end tests: serves body.txt, env values at /env/KEY, and exits
cleanly on SIGTERM (finishing in-flight requests)."""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = open(os.path.join(os.path.dirname(__file__), "body.txt")).read().strip()
if os.environ.get("FAIL_AT_BOOT"):
    sys.exit("failing at boot as asked")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/env/"):
            text = os.environ.get(self.path[5:], "")
        else:
            text = BODY
        data = (text + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stdout.write("%s %s\n" % (self.command, self.path))


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


srv = Server(("0.0.0.0", int(os.environ.get("PORT", "5000"))), Handler)


def stop(*_):
    threading.Thread(target=srv.shutdown).start()


signal.signal(signal.SIGTERM, stop)
print("listening on", srv.server_address, flush=True)
srv.serve_forever()

"""A tiny HTTP app for scheduler and proxy tests: serves $MESSAGE on every path.

Honours PORT, keeps connections alive, uses a real listen backlog (128: the stdlib's 5 makes a
proxy cutover burst wait for SYN retries), and on SIGTERM stops accepting, keeps answering for
~0.3 s, then exits.
"""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGE = os.environ.get("MESSAGE", "hello")
PORT = int(os.environ.get("PORT", "5000"))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        body = (MESSAGE + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


def main():
    server = Server(("0.0.0.0", PORT), Handler)

    def on_term(signum, frame):
        print("SIGTERM received, stopping", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"listening on {PORT} with MESSAGE={MESSAGE}", flush=True)
    server.serve_forever(poll_interval=0.1)
    time.sleep(0.3)  # let in-flight requests finish
    print("bye", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

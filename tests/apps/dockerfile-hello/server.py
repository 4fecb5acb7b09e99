"""A tiny HTTP/1.1 app for pushdock's tests: answers $MESSAGE on $PORT, drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGE = os.environ.get("MESSAGE", "hello from pushdock")
PORT = int(os.environ.get("PORT", "5000"))


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = False  # server_close() waits for in-flight requests
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.idle: set[socket.socket] = set()  # keep-alive connections waiting for a request

    def drain(self) -> None:
        """Stop accepting, then end idle keep-alive connections; busy ones close after their response."""
        self.stopping.set()
        self.shutdown()
        with self.lock:
            for conn in self.idle:
                try:
                    conn.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30  # an idle keep-alive connection does not hold a thread forever
    server: Server

    def handle_one_request(self) -> None:
        with self.server.lock:
            if self.server.stopping.is_set():
                self.close_connection = True
                return
            self.server.idle.add(self.connection)
        try:
            super().handle_one_request()
        finally:
            with self.server.lock:
                self.server.idle.discard(self.connection)

    def parse_request(self) -> bool:
        with self.server.lock:  # a request arrived: this connection is busy now
            self.server.idle.discard(self.connection)
        return super().parse_request()

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        body = f"{MESSAGE}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would cost more than the request


def main() -> None:
    server = Server(("0.0.0.0", PORT))

    def on_term(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever(), which runs in this thread: call it from another one
        threading.Thread(target=server.drain, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"listening on :{PORT}", flush=True)
    server.serve_forever()
    server.server_close()  # joins the request threads: in-flight requests finish
    print("stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

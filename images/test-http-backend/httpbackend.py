"""A tiny HTTP backend: the workload of test pods (`image: .../test-http-backend`).

Every answer names the backend (body and X-Backend header), so a test can see which pod
a balancer chose. GET /healthz (and /health, as traefik/whoami) answers 200 while the file named by --unhealthy-file
does not exist, so a test can fail a health check without killing the process. GET /header/<name>
answers with the value of that request header as the backend received it (X-Forwarded-Proto).
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import socketserver
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "hakeeper-test-backend"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as written, not 40 ms apart

    def _answer(self, status: int, body: str) -> None:
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Backend", self.server.name)  # type: ignore[attr-defined]
        # headers and body in one write: a backend killed between two writes cuts a response
        # after its headers, which no balancer can retry (the answer has begun); that is a
        # fault of this backend, not one the tests of killed backends are about
        # (end_headers() is this append of the blank line, then flush_headers())
        self._headers_buffer.append(b"\r\n" + (data if self.command != "HEAD" else b""))  # type: ignore[attr-defined]
        self.flush_headers()

    def do_GET(self) -> None:
        with self.server.inflight:  # type: ignore[attr-defined]
            self._get()

    def _get(self) -> None:
        name = self.server.name  # type: ignore[attr-defined]
        unhealthy = self.server.unhealthy_file  # type: ignore[attr-defined]
        if self.path in ("/healthz", "/health"):
            if unhealthy and os.path.exists(unhealthy):
                self._answer(503, f"{name} unhealthy")
            else:
                self._answer(200, f"{name} ok")
        elif self.path.startswith("/status/") and self.path[8:].isdigit():
            self._answer(int(self.path[8:]), name)
        elif self.path.startswith("/header/"):
            # what the balancer sent the backend, e.g. /header/X-Forwarded-Proto
            self._answer(200, self.headers.get(self.path[8:], ""))
        else:
            self._answer(200, name)

    do_HEAD = do_GET  # noqa: N815 - http.server dispatches on this name

    def log_message(self, format: str, *args: object) -> None:
        pass  # a request log per request would drown the pod's log


class InFlight:
    """Counts requests being answered, so a stopping server can let them finish."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __enter__(self) -> None:
        with self.changed:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.count -= 1
            self.changed.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.count == 0, timeout)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # in a pod of its own network namespace 0.0.0.0 is right; on the local node POD_IP is set
    parser.add_argument("--address", default=os.environ.get("POD_IP", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", default=os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", "backend"))
    parser.add_argument("--unhealthy-file", default=None)
    args = parser.parse_args(argv)
    server = Server((args.address, args.port), Handler)
    server.name = args.name  # type: ignore[attr-defined]
    server.unhealthy_file = args.unhealthy_file  # type: ignore[attr-defined]
    server.inflight = InFlight()  # type: ignore[attr-defined]
    # SIGTERM as a well-behaved service takes it: stop accepting, finish what is in flight
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.inflight.wait_idle(5)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

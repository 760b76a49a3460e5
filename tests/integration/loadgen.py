"""A small HTTP load generator of one request class, run as its own process (so its threads do not
share a GIL with the test or with the other class's generator).

Each thread sends GET requests on new connections, at most one per `--pace` seconds, with the given
headers, until SIGTERM (or --duration), then writes one JSON object per request to --out:
{"t": start (time.monotonic(), the same clock in every process), "latency": seconds,
"status": HTTP status or 0 for a connection error, "retryAfter": the header or null}.

    python loadgen.py --address 127.0.0.5 --port 8080 --header X-Class:low --threads 16 --pace 0.1 --out low.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import threading
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--path", default="/")
    p.add_argument("--header", action="append", default=[], help="Name:Value")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pace", type=float, default=0.0, help="least seconds between two requests of a thread")
    p.add_argument("--duration", type=float, default=3600.0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    headers = {"Connection": "close", **dict(h.split(":", 1) for h in args.header)}
    stop = threading.Event()
    results: list[dict] = []
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            start = time.monotonic()
            status, retry_after = 0, None
            conn = http.client.HTTPConnection(args.address, args.port, timeout=10)
            try:
                conn.request("GET", args.path, headers=headers)
                response = conn.getresponse()
                response.read()
                status, retry_after = response.status, response.getheader("Retry-After")
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            end = time.monotonic()
            with lock:
                results.append({"t": start, "latency": end - start, "status": status, "retryAfter": retry_after})
            stop.wait(max(0.0, args.pace - (end - start)))

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    stop.wait(args.duration)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    with open(args.out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()

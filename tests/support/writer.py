"""An application that writes through a database endpoint during a failover, and what it was told.

The same client for the integration tier (servers started from the images, the -primary
"Service" is LoopDriver.primary_host) and the e2e tier (the -primary Service's cluster IP): it INSERTs
one id after another with autocommit and records every id the server acknowledged, so a
test can check afterwards that none of them is missing on the new primary.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


@dataclasses.dataclass
class Ack:
    """One acknowledged INSERT: the id, when the acknowledgement came (time.monotonic()
    seconds), and the host that gave it."""

    id: int
    at: float
    host: str


class Client(threading.Thread):
    """A client of the database endpoint, one statement after another: against whatever host
    endpoint() names at that moment (None: nowhere to go yet, ask again in 20 ms), over a
    connection made by connect(host), a new one when the host changes and after every error
    (which counts as one: any exception from connect or the statement). Subclasses say what one
    statement is (_once) and what an error means to them (_failed). pause: seconds between two
    statements; retry_pause: seconds to wait after an error. A daemon thread: start() it, stop() it.
    """

    def __init__(self, name: str, endpoint: Callable[[], str | None], connect: Callable[[str], Any], *,
                 pause: float, retry_pause: float) -> None:
        super().__init__(name=name, daemon=True)
        self.endpoint, self.connect = endpoint, connect
        self.pause, self.retry_pause = pause, retry_pause
        self._halt = threading.Event()

    def _once(self, conn: Any, host: str) -> None:
        raise NotImplementedError

    def _failed(self, exc: Exception) -> None:
        raise NotImplementedError

    def run(self) -> None:
        conn: Any = None
        conn_host: str | None = None
        while not self._halt.is_set():
            host = self.endpoint()
            if host is None:
                self._halt.wait(0.02)
                continue
            try:
                if conn is None or conn_host != host:
                    _close(conn)
                    conn, conn_host = self.connect(host), host
                self._once(conn, host)
            except Exception as exc:  # noqa: BLE001 - what a client sees during a failover
                self._failed(exc)
                _close(conn)
                conn = None
                self._halt.wait(self.retry_pause)
            if self.pause:
                self._halt.wait(self.pause)
        _close(conn)

    def stop(self, timeout: float = 30) -> None:
        """Stops and waits up to `timeout` seconds for the thread to end."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=timeout)


class Writer(Client):
    """INSERTs ids first_id, first_id + 1, ... one at a time, each in its own autocommit
    statement, against whatever host endpoint() names at that moment.

    endpoint: () -> host (a name or an address) or None while there is nowhere to write
        (then the writer waits 20 ms and asks again).
    connect: host -> a DB-API connection (pymysql.connect(...) with autocommit and short
        timeouts); a new one when the host changes and after every error.
    sql: the INSERT, with the placeholders (pymysql's %s) that params(id) fills.
    params: id -> the statement's arguments; (id,) by default.
    pause: seconds between two statements (0: none).
    retry_pause: seconds to wait after an error before the next id.

    Records every acknowledged id in `acked` (a list of Ack, in order) and every error in
    `errors` ((time.monotonic(), message)); after an error, whose outcome the client cannot
    know, the writer moves on to the next id and never reuses the failed one. Any exception
    from connect or the statement counts as such an error. A daemon thread: start() it,
    stop() it.
    """

    def __init__(self, endpoint: Callable[[], str | None], connect: Callable[[str], Any], sql: str, *,
                 params: Callable[[int], tuple] = lambda i: (i,), first_id: int = 1, pause: float = 0.0,
                 retry_pause: float = 0.01) -> None:
        super().__init__("writer", endpoint, connect, pause=pause, retry_pause=retry_pause)
        self.sql, self.params = sql, params
        self.acked: list[Ack] = []
        self.errors: list[tuple[float, str]] = []
        self.calls: dict[int, float] = {}
        """id -> time.monotonic() just before its INSERT was sent: with `acked`, the history a
        linearizability checker reads (tests/support/linearizability.py)."""
        self.next_id = first_id

    def _once(self, conn: Any, host: str) -> None:
        i = self.next_id
        self.next_id += 1
        self.calls[i] = time.monotonic()
        with conn.cursor() as cur:
            cur.execute(self.sql, self.params(i))
        self.acked.append(Ack(i, time.monotonic(), host))

    def _failed(self, exc: Exception) -> None:
        self.errors.append((time.monotonic(), str(exc)))

    def ids(self) -> set[int]:
        """Every acknowledged id."""
        return {a.id for a in self.acked}

    def acked_since(self, moment: float | None = None, host: str | None = None) -> list[Ack]:
        """The acknowledgements after `moment` (time.monotonic() seconds; every one when None),
        from `host` only when given, in order."""
        return list(self._acks(moment, host))

    def first_ack(self, after: float, host: str | None = None) -> Ack | None:
        """The first acknowledgement after `after` (time.monotonic() seconds), from `host`
        only when given; None when there is none yet."""
        return next(self._acks(after, host), None)

    def _acks(self, after: float | None, host: str | None) -> Iterator[Ack]:
        return (a for a in self.acked if (after is None or a.at > after) and (host is None or a.host == host))


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - the connection is broken already
            pass


@dataclasses.dataclass(frozen=True)
class Read:
    """One answered read: when it was sent and answered (time.monotonic() seconds), what it returned."""

    call: float
    ret: float
    value: int


class Reader(Client):
    """Runs one query that returns a single integer (SELECT MAX(id) ...), again and again,
    against whatever host endpoint() names, and records every answer with its call and return
    times in `reads` (a failed read says nothing and is only counted in `failures`): the reads
    of a history a linearizability checker judges (tests/support/linearizability.py).

    endpoint, connect, retry_pause: as Writer's. pause: seconds between two reads. A daemon
    thread: start() it, stop() it.
    """

    def __init__(self, endpoint: Callable[[], str | None], connect: Callable[[str], Any], sql: str, *,
                 pause: float = 0.005, retry_pause: float = 0.01) -> None:
        super().__init__("reader", endpoint, connect, pause=pause, retry_pause=retry_pause)
        self.sql = sql
        self.reads: list[Read] = []
        self.failures = 0

    def _once(self, conn: Any, host: str) -> None:
        call = time.monotonic()
        with conn.cursor() as cur:
            cur.execute(self.sql)
            value = int(cur.fetchone()[0] or 0)
        self.reads.append(Read(call, time.monotonic(), value))

    def _failed(self, exc: Exception) -> None:
        self.failures += 1

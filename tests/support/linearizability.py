"""The writer's history judged by porcupine, a linearizability checker nobody here wrote.

porcupine (github.com/anishathalye/porcupine; the algorithm of Lowe, "Testing for
Linearizability", and Horn & Kroening, "Faster linearizability checking via
P-compositionality", arXiv:1504.00204) takes a sequential model and a history of
operations with call and return times, and says whether some order of the operations,
each taking effect at one instant between its call and its return, obeys the model.

The model here (hack/linearizability/main.go) is one register holding the highest id
committed so far to an insert-only table that one sequential writer fills with strictly
increasing ids: write(v), an INSERT of v, sets it to max(it, v) and is always legal;
read(r), a SELECT MAX(id) that returned r (0 for an empty table), is legal iff r equals it.
So an acknowledged INSERT that a later read does not cover is lost, a read lower than an
earlier one went back in time, and a read of an id nobody inserted is invented.

A write whose outcome the client does not know (an error: it may or may not have
committed) has ret=None; the checker gives it a return after every other event, the way
porcupine's own tests close the operations a Jepsen history leaves pending, so it may take
effect at any moment after its call or, placed last, never. Left so, a history that is not
linearizable costs porcupine time exponential in such writes (20 000 writes with 2 % of
them failed: over a minute); so the checker ends each one's interval at the return of the
first acknowledged write of a higher id called after it, past which applying it or not
changes no read: the same verdict (the unit tests compare the two on every small history),
in a fraction of a second. unknown_until_end=True checks without that.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
from collections.abc import Iterable
from typing import Literal

from tests.support.writer import Reader, Writer

ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation of the history.

    client: who ran it, a small int from 0 (the writer's and each reader's own; porcupine's
        visualization draws one row per client).
    kind: "write" (an INSERT of the id `value`) or "read" (SELECT MAX(id) returned `value`,
        0 for an empty table).
    value: the id, >= 0.
    call, ret: time.monotonic() seconds when the statement was sent and when its answer
        came; ret None for a write whose outcome is unknown (a read that failed says
        nothing: leave it out).
    """

    client: int
    kind: Literal["write", "read"]
    value: int
    call: float
    ret: float | None

    def to_json(self) -> dict:
        return {"client": self.client, "kind": self.kind, "value": self.value, "call": self.call, "return": self.ret}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the checker said.

    linearizable: True, False, or None when the check timed out.
    operations, reads, writes, unknown: counts of the history (unknown: writes with ret None).
    seconds: how long porcupine took to check (not the build nor the visualization).
    visualization: the path of porcupine's HTML visualization: written when asked for, and
        always, to a temporary file, for a history that is not linearizable; else None.
    """

    linearizable: bool | None
    operations: int
    reads: int
    writes: int
    unknown: int
    seconds: float
    visualization: str | None


def checker() -> pathlib.Path:
    """The checker's binary, built by hack/build-linearizability.sh (nothing to do when cached,
    seconds when cold; porcupine comes from the Go module proxy).

    Raises subprocess.CalledProcessError when the build fails.
    """
    out = subprocess.run(["bash", str(ROOT / "hack/build-linearizability.sh")], check=True, capture_output=True,
                         text=True)
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


def check(operations: Iterable[Operation], timeout: float = 60.0,
          visualize: str | os.PathLike[str] | None = None, *, unknown_until_end: bool = False) -> Verdict:
    """Checks the history `operations` (any order) against the max register, with porcupine.

    timeout: seconds porcupine may search (0: no limit); past it the verdict's linearizable
        is None.
    visualize: where to write porcupine's HTML visualization (it is written for a history
        that is not linearizable anyway, to a temporary file named in the verdict).
    unknown_until_end: every write of unknown outcome pending to the end of the history,
        as porcupine's tests have it (see the module's doc).

    Raises ValueError, with the checker's message, for a history it refuses (a read with no
    ret, a negative value or client, a ret before its call, a time past 9e9 s), and json's
    for a NaN or infinite time;
    subprocess.CalledProcessError when the build fails or the checker fails otherwise;
    subprocess.TimeoutExpired when it runs two minutes past `timeout`.
    """
    args = [str(checker()), f"-timeout={round(timeout * 1e9)}ns"]
    if visualize is not None:
        args.append(f"-visualize={os.fspath(visualize)}")
    if unknown_until_end:
        args.append("-unknown-until-end")
    history = json.dumps([op.to_json() for op in operations], allow_nan=False)
    proc = subprocess.run(args, input=history, capture_output=True, text=True,
                          timeout=timeout + 120 if timeout else None)
    if proc.returncode == 2:
        raise ValueError(proc.stderr.strip())
    if proc.returncode not in (0, 1, 3):
        raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
    return Verdict(**json.loads(proc.stdout))


def writer_operations(writer: Writer, *, client: int = 0) -> list[Operation]:
    """The writes of a stopped Writer as operations, one per INSERT it sent (writer.calls:
    id -> its call time), in id order: an acknowledged one returns at its Ack.at, every other
    one (its INSERT raised, or was under way when the writer stopped) has an unknown outcome."""
    acks = {a.id: a.at for a in writer.acked}
    return [Operation(client, "write", i, call, acks.get(i)) for i, call in sorted(writer.calls.items())]


def history(writer: Writer, readers: Iterable[Reader] = ()) -> list[Operation]:
    """A stopped writer's INSERTs (client 0: writer_operations) and the answered reads of
    stopped readers (clients 1, 2, ...), as one history."""
    ops = writer_operations(writer)
    for client, reader in enumerate(readers, start=1):
        ops += [Operation(client, "read", r.value, r.call, r.ret) for r in reader.reads]
    return ops

"""Failover benchmark per flavor on the real servers, started from their images exactly as the
StatefulSet starts them (tests/integration/mysql_support.PodFleet: the shipped my.cnf and init
container), with the clustering loop as the operator runs it (Cluster.step every probeInterval).

Measures, in one run, for MariaDB 10.11 and MySQL 9.7:
- failover: kill -9 of the primary of a 3-member cluster under a continuous writer, to the
  first write acknowledged by the new primary; split into detection (kill -> the loop decides
  to fail over) and promotion (decision -> first acknowledged write). The killed member is
  restarted after each failover and rejoins as a replica before the next kill.
- writes lost: acknowledged ids missing on the primary afterwards (must be 0).
- planned switchover: the longest gap between two acknowledged writes around a switchover.
- baseline: "restart the killed primary" - kill -9 of a single server, start it again at
  once (what a restarted pod does), to the first acknowledged write.
- durability: the primary's replication links cut (iptables) until semi-sync falls back and
  it acknowledges writes no replica has, then kill -9. Lossless refuses (FailoverRefused) and
  the old primary, restarted, is opened again (writes it lost counted); Available promotes and
  the writer counts the acknowledged writes lost (the negative control: the count sees loss).

- linearizability: all along, READERS clients read SELECT MAX(id) through the -primary
  endpoint; the writer's INSERTs (with their call times, acknowledgements and unknown
  outcomes) and those reads, across every failover and switchover of a flavor, are judged by
  porcupine (tests/support/linearizability.py, a checker nobody here wrote): every
  acknowledged write present, no read going back in time. The Available trials are its
  negative control: their lost writes must make the history non-linearizable.

Settings: the spec's defaults (probeInterval 1s, failureThreshold 3, semi-sync waiting for
1 replica, timeout 10s, durability Lossless), except antiFlapWindow 1s so failovers can follow
one another (and semiSync.timeout 3s in the durability runs).

    .venv/bin/python bench/failover/run.py [--flavors mariadb,mysql] [--failovers 20]
        [--switchovers 10] [--restarts 10] [--controls 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT), str(ROOT / "hack"), str(Path(__file__).resolve().parent)]

from stats import percentile, table

from hakeeper.replicateddatabase.clustering import Policy
from tests.integration.mariadb_support import LoopDriver, Writer, app_connect, bootstrap, stop_background, stored_ids
from tests.integration.mysql_support import PodFleet, database_spec, fall_back_then_kill, reseed
from tests.support.linearizability import Verdict, check, history
from tests.support.polling import poll
from tests.support.writer import Reader

READERS = 2
"""Clients reading SELECT MAX(id) through the -primary endpoint all along, for the history."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Results:
    def __init__(self) -> None:
        self.total: list[float] = []
        self.detection: list[float] = []
        self.promotion: list[float] = []
        self.restart: list[float] = []
        self.switchover_gap: list[float] = []
        self.acked = 0
        self.lost = 0
        self.reseeded = 0
        self.available_promoted: list[float] = []
        self.available_lost: list[int] = []
        self.available_acked: list[int] = []
        self.lossless_refused = 0
        self.lossless_trials = 0
        self.lossless_lost: list[int] = []
        self.verdicts: list[tuple[str, Verdict]] = []
        """(what was judged, porcupine's verdict)."""


def readers(loop: LoopDriver, first_id: int) -> list[Reader]:
    """READERS started readers of the highest id at or above first_id through the -primary endpoint."""
    started = [Reader(loop.primary_host, app_connect,
                      f"SELECT COALESCE(MAX(id), 0) FROM hk.writes WHERE id >= {int(first_id)}")
               for _ in range(READERS)]
    for reader in started:
        reader.start()
    return started


def judge(what: str, writer: Writer, reading: list[Reader], res: Results) -> Verdict:
    """The writer's and the readers' history (both stopped) checked by porcupine."""
    for reader in reading:
        reader.stop()
    verdict = check(history(writer, reading), timeout=300)
    res.verdicts.append((what, verdict))
    log(f"{what}: porcupine says linearizable={verdict.linearizable} ({verdict.writes} writes, {verdict.reads} "
        f"reads, {verdict.unknown} of unknown outcome; {verdict.seconds:.2f}s)"
        + (f"; see {verdict.visualization}" if verdict.visualization else ""))
    return verdict


def decision_time(loop: LoopDriver, result) -> float:
    """When the loop had gathered and decided: the failover step's start plus its probing."""
    seen = next(o for o in loop.observed if o.result is result)
    return seen.started + result.probe_seconds


def wait_healthy(loop: LoopDriver, fleet: PodFleet, res: Results, timeout: float = 90) -> None:
    """Wait for every member to replicate again; an old primary that came back with errant
    transactions (MySQL keeps a killed primary's unacknowledged tail; MariaDB's recovery cuts
    it) is re-seeded from a serving replica as the operator does it (mysql_support.reseed: the
    clone or mariabackup copy, then a restart that swaps it in), the loop running, and counted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = loop.last
        if last.state == "Healthy":
            return
        for m in last.members:
            if m["errant"] and m["reachable"]:
                donor = next((x["name"] for x in last.members if x["serving"]), None)
                if donor is None:
                    break
                log(f"  {m['name']} has errant transactions; re-seeding it from {donor}")
                res.reseeded += 1
                member = fleet.by_name(m["name"])
                reseed(loop, member, donor, f"b{res.reseeded}", keep="discard")
                log("    " + "; ".join(line for line in member.init_output.splitlines() if "GTID" in line
                                       or "re-seeded" in line))
                loop.wait(lambda r, name=m["name"]: not any(x["errant"] for x in r.members if x["name"] == name),
                          30, f"{m['name']} to come back without errant transactions")
                break
        time.sleep(0.2)
    raise TimeoutError(f"cluster not healthy after {timeout}s: {loop.last.state} {loop.last.reason}")


def policy_of(fleet: PodFleet, **changes: float) -> Policy:
    import dataclasses

    return dataclasses.replace(Policy.from_spec(fleet.spec), **changes)


def bench_failovers(flavor: str, count: int, switchovers: int, res: Results) -> None:
    fleet = PodFleet(database_spec(flavor)).start()
    try:
        loop = bootstrap(fleet, policy_of(fleet, anti_flap_window=1.0)).start()  # type: ignore[arg-type]
        writer = Writer(loop.primary_host)
        writer.start()
        reading = readers(loop, 1)
        for i in range(count):
            wait_healthy(loop, fleet, res)
            before = len(writer.acked)
            poll(lambda: len(writer.acked) >= before + 100, 30, what="writes before the kill")
            old = loop.primary
            mark = len(loop.observed)
            time.sleep(random.uniform(0, loop.policy.probe_interval))  # not in step with the probes
            fleet.by_name(old).kill()
            killed = time.monotonic()
            failover = loop.wait(lambda r: r.primary != old, 60, "a failover")
            new = failover.primary
            first = poll(lambda: writer.first_ack(killed, fleet.by_name(new).host), 30,
                         what="a write on the new primary")
            decided = decision_time(loop, failover)
            res.total.append(first.at - killed)  # type: ignore[union-attr]
            res.detection.append(decided - killed)
            res.promotion.append(first.at - decided)  # type: ignore[union-attr]
            missing = writer.ids() - stored_ids(fleet.by_name(new))
            res.lost += len(missing)
            slowest = sorted(failover.action_seconds, key=lambda a: -a[1])[:3]
            log(f"failover {i + 1:>2}/{count}: {old} -> {new}  kill->write {res.total[-1]:.2f}s "
                f"(detect {res.detection[-1]:.2f}s, promote {res.promotion[-1]:.2f}s)  lost {len(missing)}"
                f"  steps {len(loop.observed) - mark}  slowest: "
                + ", ".join(f"{name} {sec:.2f}s" for name, sec in slowest))
            fleet.by_name(old).start()  # the killed member comes back and must rejoin

        for i in range(switchovers):
            wait_healthy(loop, fleet, res)
            before = len(writer.acked)
            poll(lambda: len(writer.acked) >= before + 100, 30, what="writes before the switchover")
            old = loop.primary
            target = [m.name for m in loop.members if m.name != old][i % 2]
            requested = time.monotonic()
            loop.switchover_target = target
            loop.wait(lambda r: r.primary == target, 30, "the switchover")
            loop.switchover_target = None
            poll(lambda: writer.first_ack(requested, fleet.by_name(target).host), 30, what="a write on the target")
            time.sleep(0.5)
            acks = [a.at for a in writer.acked if a.at > requested - 0.5]
            gap = max(b - a for a, b in zip(acks, acks[1:]))
            res.switchover_gap.append(gap)
            missing = writer.ids() - stored_ids(fleet.by_name(target))
            res.lost += len(missing)
            log(f"switchover {i + 1:>2}/{switchovers}: {old} -> {target}  longest gap {gap * 1000:.0f} ms  "
                f"lost {len(missing)}")

        writer.stop()
        judge(f"{flavor}: {count} failovers and {switchovers} switchovers", writer, reading, res)
        wait_healthy(loop, fleet, res)
        acked = writer.ids()
        res.acked += len(acked)
        for inst in fleet:
            poll(lambda: acked <= stored_ids(inst), 30, what=f"{inst.name} to hold every acknowledged write",
                 ignore=Exception)
        loop.stop()
    finally:
        stop_background()
        fleet.close()


def bench_restarts(flavor: str, count: int, res: Results) -> None:
    fleet = PodFleet(database_spec(flavor, replicas=1)).start()
    try:
        loop = bootstrap(fleet, policy_of(fleet)).start()  # type: ignore[arg-type]
        writer = Writer(loop.primary_host)
        writer.start()
        inst = fleet[0]
        for i in range(count):
            before = len(writer.acked)
            poll(lambda: len(writer.acked) >= before + 100, 30, what="writes before the kill")
            time.sleep(random.uniform(0, loop.policy.probe_interval))
            inst.kill()
            killed = time.monotonic()
            inst.start()
            first = poll(lambda: writer.first_ack(killed), 30, what="a write after the restart")
            res.restart.append(first.at - killed)  # type: ignore[union-attr]
            log(f"restart {i + 1:>2}/{count}: kill->write {res.restart[-1]:.2f}s")
        writer.stop()
        missing = writer.ids() - stored_ids(inst)
        res.lost += len(missing)
        res.acked += len(writer.ids())
        loop.stop()
    finally:
        stop_background()
        fleet.close()


def bench_durability(flavor: str, durability: str, trials: int, res: Results) -> None:
    """Semi-sync forced off by a cut of the replication links, then kill -9 (module docstring)."""
    fleet = PodFleet(database_spec(flavor, durability=durability, semiSync={"timeout": "3s"})).start()
    try:
        loop = bootstrap(fleet, policy_of(fleet, anti_flap_window=1.0)).start()  # type: ignore[arg-type]
        for i in range(trials):
            wait_healthy(loop, fleet, res)
            writer = Writer(loop.primary_host)
            writer.next_id = 10_000_000 * (i + 1)
            writer.start()
            reading = readers(loop, writer.next_id)
            poll(lambda: len(writer.acked) >= 50, 30, what="writes before the cut")
            old = fleet.by_name(loop.primary)  # type: ignore[arg-type]
            _, killed = fall_back_then_kill(loop, writer, old)
            writer.stop()
            acked = writer.ids()
            if durability == "Lossless":
                res.lossless_trials += 1
                refused = loop.wait(lambda r: r.state == "Lost" or r.history is not None, 30, "a decision")
                res.lossless_refused += bool(refused.refused and refused.history is None)
                old.start()
                loop.wait(lambda r: r.primary == old.name and r.available, 60, "the old primary reopened")
                poll_reads(reading, loop.last.primary, fleet)
                judge(f"{flavor} Lossless trial {i + 1} (refused, the old primary back)", writer, reading, res)
                res.lossless_lost.append(len(acked - stored_ids(old)))
                log(f"{flavor} Lossless {i + 1}/{trials}: refused {refused.refused}; the old primary back "
                    f"lacks {res.lossless_lost[-1]} of {len(acked)} acknowledged writes")
            else:
                failover = loop.wait(lambda r: r.history is not None, 60, "the Available failover")
                new = fleet.by_name(failover.primary)  # type: ignore[arg-type]
                res.available_promoted.append(time.monotonic() - killed)
                res.available_lost.append(len(acked - stored_ids(new)))
                res.available_acked.append(len(acked))
                poll_reads(reading, new.name, fleet)
                judge(f"{flavor} Available trial {i + 1} (the negative control)", writer, reading, res)
                log(f"{flavor} Available {i + 1}/{trials}: promoted {new.name}; lost {res.available_lost[-1]} of "
                    f"{len(acked)} acknowledged writes")
                old.start()  # back with writes the new primary lacks: errant, re-seeded
        loop.stop()
    finally:
        stop_background()
        fleet.close()


def poll_reads(reading: list[Reader], primary: str | None, fleet: PodFleet) -> None:
    """Wait until every reader has answers from `primary` after the fault: the reads that judge it."""
    since = time.monotonic()
    poll(lambda: all(any(r.call > since for r in reader.reads) for reader in reading), 30,
         what=f"reads through the -primary endpoint on {primary}")


def report(flavor: str, res: Results) -> None:
    label = {"mariadb": "MariaDB 10.11", "mysql": "MySQL 9.7"}[flavor]
    print(f"\nReplicatedDatabase failover, {label}, 3 members on loopback started from the image as the "
          "StatefulSet starts them; probeInterval 1s, failureThreshold 3, semi-sync 1 ack, durability Lossless "
          "(antiFlapWindow 1s so kills can follow each other)\n")
    print(table([
        ("failover: kill -9 -> first acknowledged write", res.total),
        ("  detection (kill -> failover decided)", res.detection),
        ("  promotion (decided -> first acknowledged write)", res.promotion),
        ("baseline: restart the killed primary -> write", res.restart),
        ("planned switchover: longest write gap", res.switchover_gap),
        ("Available after a fallback: kill -9 -> promoted", res.available_promoted),
    ]))
    ratio = percentile(res.total, 50) / percentile(res.restart, 50) if res.total and res.restart else float("nan")
    print(f"\nfailover p50 / restart-the-primary p50 = {ratio:.2f}x")
    print(f"acknowledged writes: {res.acked}, lost: {res.lost}; old primaries re-seeded for errant "
          f"transactions: {res.reseeded}")
    print(f"semi-sync fallen back, then kill -9: Lossless refused {res.lossless_refused} of {res.lossless_trials} "
          f"failovers, the old primary back lacked {res.lossless_lost} acknowledged writes; Available lost "
          f"{res.available_lost} of {res.available_acked} acknowledged writes (the negative control)")
    for what, verdict in res.verdicts:
        print(f"porcupine: {what}: linearizable {verdict.linearizable} ({verdict.writes} writes, {verdict.reads} "
              f"reads, {verdict.unknown} of unknown outcome, checked in {verdict.seconds:.2f}s)")
    goal = res.total and percentile(res.total, 50) <= 3.0
    print(f"goal failover p50 <= 3s: {'met' if goal else 'NOT met'}; 0 lost under Lossless failovers: "
          f"{'met' if res.lost == 0 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavors", default="mariadb,mysql")
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument("--switchovers", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--controls", type=int, default=3, help="durability trials per flavor and durability")
    args = parser.parse_args()

    started = time.monotonic()
    lost = 0
    results = {}
    for flavor in args.flavors.split(","):
        res = results[flavor] = Results()
        bench_restarts(flavor, args.restarts, res)
        bench_failovers(flavor, args.failovers, args.switchovers, res)
        if args.controls:
            bench_durability(flavor, "Lossless", 1, res)
            bench_durability(flavor, "Available", args.controls, res)
        lost += res.lost
    for flavor, res in results.items():
        report(flavor, res)
    print(f"\n(run took {time.monotonic() - started:.0f}s)")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

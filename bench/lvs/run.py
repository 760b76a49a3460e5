"""LVS benchmark in the lvs tier's VM (tests/lvs): IPVS as keepalived programs it from the file
hakeeper renders, Debian's kernel under qemu software emulation (this machine's kernel has no
IPVS), the network of tests/lvs/topology.py.

- Requests/s: sequential short TCP connections (connect, one line, its echo, close) from the
  client namespace through the VIP with NAT and with DR (round robin over three real servers),
  against the baseline of the same client straight to one real server, same VM, same run,
  alternated in rounds. Everything shares the VM's two emulated CPUs: the ratio is the number
  to read, not the absolute rate.
- VRRP takeover under traffic: the client loops on short connections (every 50 ms) while the
  master director's front link goes down and its keepalived is killed; time until the VIP is
  on the backup, and the client's longest time without an answer. Baseline: the protocol's
  bound, 3 x advert_int + (256 - 99) / 256 (the backup's priority is 99).
- Connections lost across that failover: `--connections` long-lived connections (a line every
  100 ms each) through the master, with lvs.connectionSync true and false.

    .venv/bin/python bench/lvs/run.py [--seconds 3] [--rounds 3] [--takeovers 3] [--connections 20]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT)]

from tests.lvs import scenarios, vm
from tests.lvs import topology as topo
from tests.lvs.scenarios import Scenario, pool_spec

ADVERT = 1
BOUND = 3 * ADVERT + (256 - 99) / 256 * ADVERT


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plan(args: argparse.Namespace) -> list[Scenario]:
    rate = {"direct": topo.REAL_SERVERS["r1"], "direct_port": topo.SERVICE_PORT, "seconds": args.seconds,
            "rounds": args.rounds}
    both = ("dA", "dB")
    found = [Scenario(f"bench-{forwarding.lower()}", "throughput", pool_spec(forwarding), params=rate)
             for forwarding in ("NAT", "DR")]
    found += [Scenario(f"bench-failover-{i}", "failover", pool_spec("DR"), directors=both, params={"hold": 0})
              for i in range(args.takeovers)]
    for sync in (True, False):
        found.append(Scenario(f"bench-sync-{'on' if sync else 'off'}", "sync", pool_spec("DR", sync=sync),
                              directors=both, params={"timeout": 20, "expect_synced": sync,
                                                      "connections": args.connections}))
    return found


def longest_gap(result: dict) -> float:
    """The client's longest time between two answers around the failure."""
    answered = [t for t, name in result["attempts"] if not name.startswith("error")]
    return max(b - a for a, b in zip(answered, answered[1:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one rate measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rate measurements per target")
    parser.add_argument("--takeovers", type=int, default=3, help="director failovers timed")
    parser.add_argument("--connections", type=int, default=20, help="long-lived connections per sync run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lvs needs root (qemu's share of /, namespaces in the VM)", file=sys.stderr)
        return 2
    chosen = plan(args)
    image = vm.ensure_image()
    with tempfile.TemporaryDirectory(prefix="hk-bench-lvs-") as scratch:
        job = scenarios.job(pathlib.Path(scratch), image, chosen)
        log(f"booting the VM for {len(chosen)} scenarios ...")
        run = vm.run_job(image, job, deadline=120 + 120 * len(chosen))
    found = scenarios.results(run)
    failed = [s.name for s in chosen if not found.get(s.name, {}).get("ok")]
    if failed:
        for name in failed:
            log(f"{name}: {found.get(name, {}).get('error', 'no result')}")
        log(run.console[-4000:])
        return 1

    print(f"VM: Debian kernel {image.kernel_release}, qemu TCG, {run.seconds:.0f} s for the whole run\n")
    print("| measure | value | baseline (same run) | ratio |")
    print("| --- | --- | --- | --- |")
    for forwarding in ("nat", "dr"):
        rates = found[f"bench-{forwarding}"]["rates"]
        vip, direct = statistics.median(rates["vip"]), statistics.median(rates["direct"])
        print(f"| requests/s through {forwarding.upper()} (rr, 3 real servers), median of {args.rounds} | "
              f"{vip:.0f} | {direct:.0f} straight to one real server | {vip / direct:.2f} |")
    takeovers = [found[f"bench-failover-{i}"] for i in range(args.takeovers)]
    moved = statistics.median(r["vip_moved_after"] for r in takeovers)
    gap = statistics.median(longest_gap(r) for r in takeovers)
    print(f"| VRRP takeover under traffic (VIP on the backup), median of {args.takeovers} | {moved:.2f} s | "
          f"{BOUND:.2f} s VRRP bound | {moved / BOUND:.2f} |")
    print(f"| client's longest time without an answer, median of {args.takeovers} | {gap:.2f} s | "
          f"{BOUND:.2f} s VRRP bound | {gap / BOUND:.2f} |")
    lost = {}
    for sync in ("on", "off"):
        connections = found[f"bench-sync-{sync}"]["connections"]
        lost[sync] = sum(1 for c in connections if c["error"])
    print(f"| connections lost across a director failover, connectionSync true | {lost['on']} of "
          f"{args.connections} | {lost['off']} of {args.connections} with connectionSync false | "
          f"{lost['on'] / max(lost['off'], 1):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

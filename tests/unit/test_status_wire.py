"""The status each builder writes, as the API server stores it, against golden/status.json.

The goldens were recorded from the hand-built status dicts that the pydantic status models
replaced, on the inputs in status_scenarios.py: the stored status must stay the same (the e2e
tests, kubectl users and a restarted operator read it). The one intended change is the
ReplicatedDatabase loop memory (a JSON string `loopMemory` before, typed `loop` now), which the
goldens leave out and test_database_status.py covers.

A deliberate change of the status: rerun with HAKEEPER_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import pytest

from hakeeper.api.kinds import DEGRADATION_POLICY, LOAD_BALANCER_POOL, REPLICATED_DATABASE
from hakeeper.loadbalancerpool.status import pool_status
from hakeeper.replicateddatabase.reconcile import status_of

from . import status_scenarios as s

GOLDEN = pathlib.Path(__file__).parent / "golden" / "status.json"
LOOP_FIELDS = ("loopMemory", "loop")
KINDS = {"pool": LOAD_BALANCER_POOL, "lvs": LOAD_BALANCER_POOL, "rdb": REPLICATED_DATABASE,
         "dp": DEGRADATION_POLICY, "dp-dry": DEGRADATION_POLICY}


def current() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, steps, lvs in (("pool", s.POOL_STEPS, False), ("lvs", s.LVS_STEPS, True)):
        previous: dict[str, Any] | None = None
        out[kind] = []
        for name, kw in steps:
            kw = dict(kw)
            generation = kw.pop("generation")
            previous = s.stored(previous, pool_status(previous, generation, lvs=lvs, **kw))
            out[kind].append([name, previous])
    rdb: dict[str, Any] = {}
    out["rdb"] = []
    for name, generation, result, now in s.RDB_STEPS:
        rdb = s.stored(rdb, status_of(s.rdb_body(generation, rdb), s.RDB_SPEC, result, now))
        out["rdb"].append([name, {k: v for k, v in rdb.items() if k not in LOOP_FIELDS}])
    out["dp"] = [[status, [list(e) for e in events]] for status, events in s.policy_run()]
    out["dp-dry"] = [[status, [list(e) for e in events]] for status, events in s.policy_run(dry_run=True)]
    return json.loads(json.dumps(out))  # tuples to lists, as in the file


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    got = current()
    if os.environ.get("HAKEEPER_REGEN_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    return got


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_stored_status_is_the_one_the_hand_built_dicts_stored(outputs: dict[str, Any], kind: str) -> None:
    """Compared as served: a field the CRD defaults (a shed entry's dryRun: false) reads the same
    whether the operator wrote it or the API server filled it in."""
    golden = json.loads(GOLDEN.read_text())[kind]
    assert len(outputs[kind]) == len(golden)
    for i, (got, want) in enumerate(zip(outputs[kind], golden, strict=True)):
        # pool, lvs, rdb: [step name, status]; dp: [status, Events]
        (got_status, got_extra), (want_status, want_extra) = (
            (got, want) if kind.startswith("dp") else ((got[1], got[0]), (want[1], want[0])))
        assert s.served(KINDS[kind], got_status) == s.served(KINDS[kind], want_status), f"{kind} step {i}"
        assert got_extra == want_extra, f"{kind} step {i}"

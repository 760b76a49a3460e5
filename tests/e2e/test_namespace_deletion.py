"""Deleting a namespace that holds all three kinds completes while the operator runs: the
policy's deletion handler restores what it shed (the Deployments themselves going too) and
the operator removes every finalizer it holds, so the namespace never hangs Terminating."""

from __future__ import annotations

import time

import pytest

from ..support.polling import poll
from .all_kinds import KINDS, hold_all_three_kinds

pytestmark = pytest.mark.e2e
DEADLINE = 120.0
"""Seconds for the namespace to go; measured here: see the test's output."""


def test_deleting_a_namespace_with_all_three_kinds_completes(operator, namespace, exporter):
    hold_all_three_kinds(operator, namespace, exporter, "e2e_namespace_load")
    started = time.monotonic()
    operator.kubectl("delete", "namespace", namespace, "--wait=false")

    def gone() -> bool:
        return operator.kubectl("get", "namespace", namespace, check=False).returncode != 0

    # the operator's part: every object of the three kinds released (restore done, finalizer off)
    poll(lambda: not operator.get(",".join(KINDS), "-n", namespace)["items"], DEADLINE,
         what="the pool, the database and the policy gone", interval=0.5)
    released = time.monotonic() - started
    try:
        poll(gone, DEADLINE, what=f"namespace {namespace} deleted", interval=0.5)
    except AssertionError:
        left = operator.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.conditions}", check=False)
        raise AssertionError(f"namespace {namespace} still Terminating after {DEADLINE}s: {left.stdout}") from None
    print(f"namespace with all three kinds deleted in {time.monotonic() - started:.1f}s "
          f"(the three kinds' objects gone after {released:.1f}s)")

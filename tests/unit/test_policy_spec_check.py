"""A DegradationPolicy's spec is checked (CEL, offline) once per spec, not at every evaluation:
bench/scale's profile found that check among the costliest parts of an idle operator."""

from __future__ import annotations

from typing import Any

import pytest

from hakeeper.degradationpolicy import handlers

SPEC = {"prometheus": {"url": "http://prometheus:9090"}, "interval": "10s",
        "triggers": [{"name": "load", "query": "up", "operator": ">", "threshold": 1}],
        "tiers": [{"name": "batch", "priority": 1, "selector": {"matchLabels": {"tier": "batch"}}}]}


def _body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": "DegradationPolicy",
            "metadata": {"name": "p", "namespace": "n", "generation": 1}, "spec": spec, "status": {}}


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = handlers.read_spec

    def counting(body: Any) -> Any:
        calls.append(1)
        return real(body)

    monkeypatch.setattr(handlers, "read_spec", counting)
    return calls


def test_the_same_spec_is_checked_once(checks: list[int]) -> None:
    policy = handlers.PolicyPass()
    first = policy.spec_of(_body(SPEC))
    assert first[0] is not None and first[1] == ""
    for _ in range(5):
        assert policy.spec_of(_body(dict(SPEC))) == first
    assert len(checks) == 1


def test_a_changed_spec_is_checked_again_and_a_bad_one_refused(checks: list[int]) -> None:
    policy = handlers.PolicyPass()
    policy.spec_of(_body(SPEC))
    spec, problem = policy.spec_of(_body({**SPEC, "interval": "0s"}))
    assert spec is None and "interval" in problem
    assert len(checks) == 2
    assert policy.spec_of(_body(SPEC))[0] is not None and len(checks) == 3

"""Offline validation says what the API server says (tests/e2e/invalid_specs.py holds the same cases)."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from hakeeper.api.offline import InvalidManifest, check

from ..e2e.invalid_specs import INVALID

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def _doc(kind: str, spec: dict) -> dict:
    return {"apiVersion": "hakeeper.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c[0])
def test_refused_with_the_api_servers_words(case):
    _, kind, spec, fragment = case
    with pytest.raises(InvalidManifest) as refused:
        check(_doc(kind, spec))
    assert fragment in str(refused.value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_example_passes_and_gets_defaults(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d["apiVersion"].startswith("hakeeper.io/")]
    assert docs
    for doc in docs:
        kind, spec = check(doc)
        assert spec  # defaults filled in, e.g. the pool's timeouts
        if kind.kind == "LoadBalancerPool":
            assert {"timeouts", "retries", "redispatch", "healthCheck", "balancer"} <= set(spec)


def test_unknown_fields_and_several_errors_are_all_reported():
    with pytest.raises(InvalidManifest) as refused:
        check(_doc("LoadBalancerPool", {"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 80},
                                        "retries": -1, "colour": "blue"}))
    message = str(refused.value)
    assert 'The LoadBalancerPool "x" is invalid' in message
    assert 'spec: unknown field "colour"' in message
    assert "spec.retries: Invalid value: -1: spec.retries in body should be greater than or equal to 0" in message

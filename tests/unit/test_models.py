"""The models read specs the way users write them."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from pydantic import ValidationError

from hakeeper.api import KINDS
from hakeeper.api.common import parse_duration
from hakeeper.api.loadbalancerpool import FRONTEND_PORT, LoadBalancerPoolSpec
from hakeeper.loadbalancerpool.objects import FRONTEND_PORT as BALANCER_FRONTEND_PORT

ROOT = pathlib.Path(__file__).resolve().parents[2]
BY_KIND = {k.kind: k for k in KINDS}


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("apiVersion", "").startswith("hakeeper.io/"):
            BY_KIND[doc["kind"]].spec.model_validate(doc["spec"])


def test_defaults_a_user_expects():
    spec = LoadBalancerPoolSpec.model_validate({"backends": {"selector": {"matchLabels": {"a": "b"}}, "port": 80}})
    assert spec.engine == "haproxy"
    assert spec.health_check.type == "tcp" and spec.health_check.fall == 3
    assert spec.retries == 3 and spec.redispatch is True
    assert spec.wire()["healthCheck"]["interval"] == "2s"


def test_unknown_field_is_refused_with_its_name():
    with pytest.raises(ValidationError, match="algoritm"):
        LoadBalancerPoolSpec.model_validate({"backends": {"service": "web", "port": 80}, "algoritm": "rr"})


@pytest.mark.parametrize("text,seconds", [("5s", 5), ("250ms", 0.25), ("1m30s", 90), ("2h", 7200), ("1.5s", 1.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1m 30s", "-5s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_schemas_client_port_is_the_balancers():
    """metricsPort's CEL rule names the port the HAProxy pod serves clients on (objects.py's)."""
    assert FRONTEND_PORT == BALANCER_FRONTEND_PORT

"""The CRDs in crds/ are generated from the models and are structural."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from hakeeper.api import CATEGORY, KINDS
from hakeeper.api.common import DURATION_PATTERN, cel_string
from hakeeper.api.crdgen import all_crds, crd
from hakeeper.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models():
    assert main(["crds", "--check", str(ROOT / "crds")]) == 0


def test_check_reports_a_stale_file(tmp_path, capsys):
    main(["crds", "--output-dir", str(tmp_path)])
    target = tmp_path / "loadbalancerpools.hakeeper.io.yaml"
    target.write_text(target.read_text().replace("roundrobin", "round-robin"))
    assert main(["crds", "--check", str(tmp_path)]) == 1
    assert "loadbalancerpools.hakeeper.io.yaml: differs from the models" in capsys.readouterr().err


def _walk(node, path="$"):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind):
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "const"):
            assert banned not in node, f"{path} has {banned}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "object" and path not in ("$.metadata",):
            assert "properties" in node or "additionalProperties" in node or \
                node.get("x-kubernetes-preserve-unknown-fields"), f"{path} is an untyped object"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_names_columns_and_status_subresource(kind):
    doc = crd(kind)
    names = doc["spec"]["names"]
    assert names["shortNames"] == list(kind.short_names)
    assert CATEGORY in names["categories"]
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age" and len(columns) >= 4


def test_short_names_are_the_documented_ones():
    assert {k.short_names[0] for k in KINDS} == {"lbp", "rdb", "dp"}


def test_defaults_reach_nested_objects():
    """A user who leaves out healthCheck still gets the health check defaults."""
    spec = crd(KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    health = spec["properties"]["healthCheck"]
    assert health["default"] == {"type": "tcp", "interval": "2s", "timeout": "1s", "rise": 2, "fall": 3}
    assert health["properties"]["interval"]["default"] == "2s"
    assert spec["properties"]["engine"]["enum"] == ["haproxy", "lvs", "dns"]


def test_every_cel_rule_has_a_human_message():
    for text in all_crds().values():
        for doc in yaml.safe_load_all(text):
            for rule in _rules(doc):
                assert len(rule["message"]) > 20 and not rule["message"].startswith("failed")


def _rules(node):
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", [])
        for value in node.values():
            yield from _rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from _rules(value)


ZERO_ALLOWED = {"DegradationPolicy": {"$.spec.triggers[].for", "$.spec.restore.cooldown"}}
"""The durations that may be 0s (a trigger firing at its first breaching evaluation, a restore as
soon as every trigger recovered); every other one is a period or a timeout."""


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_period_and_timeout_refuses_zero(kind):
    schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    durations = {path: node for path, node in _walk(schema, "$.spec") if node.get("pattern") == DURATION_PATTERN}
    assert durations
    positive = {path for path, node in durations.items()
                if any("duration(self) > duration('0s')" in r["rule"] for r in node.get("x-kubernetes-validations", []))}
    assert set(durations) - positive == ZERO_ALLOWED.get(kind.kind, set())


def test_every_character_rule_is_its_fields_pattern():
    """A field's words and its pattern never drift apart: the CEL rule matches the very pattern."""
    rules = 0
    for kind in KINDS:
        for path, node in _walk(crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
            for rule in node.get("x-kubernetes-validations", []):
                if rule["rule"].startswith("self.matches("):
                    rules += 1
                    assert rule["rule"] == f"self.matches({cel_string(node['pattern'])})", path
                    assert "maxLength" in node, f"{path}: the CEL cost estimate needs a maxLength"
    assert rules >= 6  # mysqlUser, cookie name, hashHeader, health check path, interface, IPv4 addresses

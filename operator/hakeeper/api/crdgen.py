"""Turns the pydantic models into structural CustomResourceDefinitions.

pydantic emits JSON Schema with $refs, nullable unions and titles; a CRD wants a
structural OpenAPI v3 schema: everything inlined, every node typed, no `null`
branches, defaults only where the API server can apply them.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from hakeeper.api.common import GROUP, VERSION
from hakeeper.api.kinds import CATEGORY, KINDS, Kind
from hakeeper.api.meta import PART_OF_LABEL

# Keys of JSON Schema that a structural CRD schema accepts (the rest are pydantic's).
_KEPT = {
    "type", "description", "properties", "items", "required", "enum", "default", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "pattern", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "additionalProperties", "nullable", "x-kubernetes-int-or-string", "x-kubernetes-validations",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-map-type",
}


class _Schema(GenerateJsonSchema):
    """Gives fields with a default_factory a default the API server can apply.

    A nested object defaults to its fully defaulted form, so that the API server fills
    it in when the user leaves it out (and its CEL rules see every field: the API server
    checks a default against the schema without applying the defaults inside it).
    """

    def default_schema(self, schema: Any) -> dict[str, Any]:  # pydantic-core's schema dicts
        factory = schema.get("default_factory")
        if factory is None:
            return super().default_schema(schema)
        inner = self.generate_inner(schema["schema"])
        value = factory()
        if isinstance(value, BaseModel):
            inner["default"] = value.model_dump(by_alias=True, exclude_none=True, mode="json")
        elif value in ([], {}):
            inner["default"] = value
        return inner


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        target.update(extra)
        return _resolve(target, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: Any) -> Any:
    """Rewrites one resolved JSON Schema node into its structural CRD form."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if node.get("x-kubernetes-int-or-string"):
        branches = node.pop("anyOf", [])
        out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
        for key in ("description", "default"):
            if key in node:
                out[key] = node[key]
        # CEL checks what anyOf cannot express for int-or-string: each branch's bounds
        ints = next((b for b in branches if b.get("type") == "integer"), None)
        strs = next((b for b in branches if b.get("type") == "string"), None)
        rule_parts = []
        if ints and "minimum" in ints and "maximum" in ints:
            rule_parts.append(f"(type(self) == int && self >= {ints['minimum']} && self <= {ints['maximum']})")
        if strs and "pattern" in strs:
            rule_parts.append(f"(type(self) == string && self.matches({strs['pattern']!r}))")
        if rule_parts:
            out["x-kubernetes-validations"] = [{
                "rule": " || ".join(rule_parts),
                "message": "must be a port number (1-65535) or a port name (lowercase letters, digits, '-')",
            }]
        return out
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {branches}")
        merged = dict(branches[0])
        merged.update({k: v for k, v in node.items() if k not in ("default",) or v is not None})
        node = merged
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", "absent") is None:
        del node["default"]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    out = {k: v for k, v in node.items() if k in _KEPT}
    for key in ("properties",):
        if key in out:
            out[key] = {name: _structural(sub) for name, sub in out[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _structural(out[key])
    if "description" in out:
        out["description"] = " ".join(out["description"].split())
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Schema)
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def crd(kind: Kind) -> dict[str, Any]:
    spec = schema_of(kind.spec)
    status = schema_of(kind.status)
    root: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }
    if kind.rules:
        root["x-kubernetes-validations"] = [dict(rule) for rule in kind.rules]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {PART_OF_LABEL: "hakeeper"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(kind.columns),
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render(kind: Kind) -> str:
    header = "# Generated from operator/hakeeper/api by `make crds`; do not edit.\n"
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=120)


def all_crds() -> dict[str, str]:
    """File name in crds/ → its YAML text."""
    files = {f"{kind.crd_name}.yaml": render(kind) for kind in KINDS}
    files["kopf-peering.yaml"] = kopf_peering_crds()
    return files


def kopf_peering_crds() -> str:
    """kopf's peering resources, which replicas use to keep one of them active."""
    docs = []
    for kind, plural, scope in (("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
                                ("KopfPeering", "kopfpeerings", "Namespaced")):
        docs.append({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.kopf.dev", "labels": {PART_OF_LABEL: "hakeeper"}},
            "spec": {
                "scope": scope,
                "group": "kopf.dev",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [{
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }},
                }],
            },
        })
    header = "# kopf's peering CRDs (leader election between operator replicas); written by `make crds`.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False)

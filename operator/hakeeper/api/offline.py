"""What the API server would say about a manifest, without an API server.

`hakeeper render` and the operator itself check a manifest against the very CRD schema
that `make crds` generates: the structural checks (required, enum, pattern, ranges,
lengths, unknown fields), then the schema's defaults, then its CEL rules
(x-kubernetes-validations) evaluated with cel-python. Messages follow the API server's
wording, so a refusal reads the same offline as at `kubectl apply`.
"""

from __future__ import annotations

import copy
import decimal
import functools
import json
import math
from collections.abc import Mapping
from typing import Any

import celpy
import celpy.adapter
import celpy.evaluation
import re2  # type: ignore[import-untyped]  # google-re2, which cel-python itself uses for matches()

from hakeeper.api.crdgen import crd
from hakeeper.api.kinds import KINDS, Kind


class InvalidManifest(ValueError):
    def __init__(self, kind: str, name: str, errors: list[str]) -> None:
        self.errors = errors
        super().__init__(f'The {kind} "{name}" is invalid: \n* ' + "\n* ".join(errors))


def kind_of(doc: Mapping[str, Any]) -> Kind:
    for kind in KINDS:
        if doc.get("kind") == kind.kind and doc.get("apiVersion") == kind.api_version:
            return kind
    raise InvalidManifest(str(doc.get("kind")), str((doc.get("metadata") or {}).get("name")), [
        f"apiVersion {doc.get('apiVersion')!r} kind {doc.get('kind')!r} is not a hakeeper kind"])


_schemas: dict[str, dict[str, Any]] = {}


def _root_schema(kind: Kind) -> dict[str, Any]:
    if kind.kind not in _schemas:
        _schemas[kind.kind] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return _schemas[kind.kind]


def _spec_schema(kind: Kind) -> dict[str, Any]:
    return _root_schema(kind)["properties"]["spec"]


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return '"object"' if isinstance(value, dict) else '"array"'
    return json.dumps(value)


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
               type(None): "null"}
"""The JSON type names the API server shows for a value of the wrong type ("number", not "float")."""

INT64 = (-(2**63), 2**63 - 1)


def _as_decoded(value: Any) -> Any:
    """`value` as the API server's JSON decoder reads it: an integer beyond int64 becomes a
    float64 (sigs.k8s.io/json, UnmarshalCaseSensitivePreserveInts: "JSON integers are unmarshaled
    ... as an int64 instead of a float64 when possible, falling back to float64 on any parse or
    overflow error").

    So `maxShedFraction: 9223372036854775808` is refused as a number past the maximum, and
    `retries: 9223372036854775808` as a number where an integer belongs, as the API server
    does; left an int, it made cel-python raise a bare ValueError("overflow").
    """
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        try:
            return float(value)
        except OverflowError:  # past float64 too (about 1.8e308): Go's decoder fails, so JSON cannot carry it
            return math.inf if value > 0 else -math.inf
    if isinstance(value, dict):
        return {key: _as_decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_decoded(item) for item in value]
    return value


def _type_ok(schema: Mapping[str, Any], value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    kind = schema.get("type")
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return kind is None or isinstance(value, _TYPES[kind])


def _go_float(value: float) -> str:
    """A non-finite float as Go prints it (NaN, +Inf, -Inf)."""
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _list_items(schema: Mapping[str, Any], value: list[Any], path: str, errors: list[str]) -> None:
    """A list's own checks: its length, and each item once in a set or a map (by its keys)."""
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: Invalid value: {len(value)}: {path} in body should have at least "
                      f"{schema['minItems']} items")
    keys = schema.get("x-kubernetes-list-map-keys") or []
    seen: set[tuple] = set()
    if schema.get("x-kubernetes-list-type") == "set":  # each item once, as the API server words it
        shown_before: set[str] = set()
        for i, item in enumerate(value):
            shown = json.dumps(item, sort_keys=True)
            if shown in shown_before:
                errors.append(f"{path}[{i}]: Duplicate value: {_show(item)}")
            shown_before.add(shown)
    for i, item in enumerate(value):
        if keys and isinstance(item, dict):
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
                errors.append(f"{path}[{i}]: Duplicate value: {{{shown}}}")
            seen.add(key)


def _go_number(number: float) -> str:
    """A number as the API server prints it in a bound or a value: an integer as is, a float as
    Go's strconv.FormatFloat(x, 'g', -1, 64): its shortest digits, with an exponent (two digits at
    least) when it is below -4 or 6 and above, so 1 (not 1.0), 1e+09 and 9.223372036854776e+18."""
    if isinstance(number, int) or number == 0:
        return str(int(number))
    sign, digits, exponent = decimal.Decimal(repr(number)).normalize().as_tuple()
    assert isinstance(exponent, int)  # a finite float
    places = exponent + len(digits) - 1  # the power of ten of the first digit
    text = "".join(map(str, digits))
    if places < -4 or places >= 6:
        shown = text[0] + ("." + text[1:] if len(text) > 1 else "") + f"e{'-' if places < 0 else '+'}{abs(places):02d}"
    else:
        shown = format(decimal.Decimal(repr(abs(number))), "f")
        shown = shown.rstrip("0").rstrip(".") if "." in shown else shown
    return ("-" if sign else "") + shown


def _bounds(schema: Mapping[str, Any], value: float, path: str, errors: list[str]) -> None:
    """minimum and maximum, worded as kube-openapi does: against an integer value the bound is an
    integer too (1000000), against a float64 it is a float64 (1e+09); both checked against the
    real API server (tests/e2e/invalid_specs.py)."""
    for key, words, past in (("minimum", "greater than or equal to", value < schema.get("minimum", value)),
                             ("maximum", "less than or equal to", value > schema.get("maximum", value))):
        if past:
            bound = float(schema[key])
            shown = str(int(bound)) if isinstance(value, int) and bound.is_integer() else _go_number(bound)
            errors.append(f"{path}: Invalid value: {_go_number(value)}: {path} in body should be {words} {shown}")


def _structural(schema: Mapping[str, Any], value: Any, path: str, errors: list[str]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        # YAML's .nan and .inf load as floats, in any field, but JSON has no such number:
        # kubectl refuses the manifest before sending it ("error converting YAML to JSON: json:
        # unsupported value: NaN"), and the API server's decoder a JSON body with 1e999
        shown = _go_float(value)
        errors.append(f"{path}: Invalid value: {shown}: json: unsupported value: {shown} (JSON, and so the "
                      "Kubernetes API, has no NaN or infinity: write a finite number)")
        return
    if not _type_ok(schema, value):
        # the API server shows the value's JSON type, and still checks a number's bounds
        # (a float64 where an integer belongs: "must be of type integer", and past the maximum)
        shown = _show(_JSON_TYPES.get(type(value), type(value).__name__))
        errors.append(f'{path}: Invalid value: {shown}: {path} in body must be of type {schema.get("type")}: {shown}')
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _bounds(schema, value, path, errors)
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(f"{path}: Unsupported value: {_show(value)}: supported values: {supported}")
    if isinstance(value, str):
        # Go's regexp, as the API server: unanchored, `$` the end of the text only; Python's re
        # lets `$` match before a final newline, so "web\n" passed a ^...$ pattern here
        if "pattern" in schema and not re2.search(schema["pattern"], value):
            errors.append(f"{path}: Invalid value: {_show(value)}: {path} in body should match '{schema['pattern']}'")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: Too long: may not be more than {schema['maxLength']} bytes")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: Invalid value: {_show(value)}: {path} in body should be at least "
                          f"{schema['minLength']} chars long")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _bounds(schema, value, path, errors)
    if isinstance(value, list):
        _list_items(schema, value, path, errors)
        for i, item in enumerate(value):
            _structural(schema.get("items") or {}, item, f"{path}[{i}]", errors)
    if isinstance(value, dict):
        props = schema.get("properties")
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(f"{path}.{name}: Required value")
        for name, item in value.items():
            if props is not None and name in props:
                _structural(props[name], item, f"{path}.{name}", errors)
            elif isinstance(schema.get("additionalProperties"), dict):
                _structural(schema["additionalProperties"], item, f"{path}[{name}]", errors)
            elif props is not None:
                errors.append(f'{path}: unknown field "{name}"')


def _defaulted(schema: Mapping[str, Any], value: Any) -> Any:
    """The API server's defaulting: a missing property with a default gets it, recursively."""
    if isinstance(value, dict):
        out = dict(value)
        for name, prop in (schema.get("properties") or {}).items():
            if name not in out and "default" in prop:
                out[name] = copy.deepcopy(prop["default"])
            if name in out:
                out[name] = _defaulted(prop, out[name])
        return out
    if isinstance(value, list):
        return [_defaulted(schema.get("items") or {}, item) for item in value]
    return value


_cel = celpy.Environment()


def _lower_ascii(text: Any) -> celpy.celtypes.StringType:
    return celpy.celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(text)))


def _replace(text: Any, old: Any, new: Any) -> celpy.celtypes.StringType:
    return celpy.celtypes.StringType(str(text).replace(str(old), str(new)))


def _split(text: Any, separator: Any) -> celpy.celtypes.ListType:
    return celpy.celtypes.ListType([celpy.celtypes.StringType(p) for p in str(text).split(str(separator))])


# The Kubernetes CEL string library functions the rules use and cel-python lacks
# (Kubernetes "CEL in Kubernetes", Strings library: lowerAscii, replace, split). Without one, the
# rule's evaluation fails and the manifest was refused offline although the API server takes it
# (spec.backup.target's prefix rule refused every prefix).
_KUBERNETES_FUNCTIONS: dict[str, Any] = {"lowerAscii": _lower_ascii, "replace": _replace, "split": _split}


@functools.cache
def _program(rule: str) -> Any:
    return _cel.program(_cel.compile(rule), functions=_KUBERNETES_FUNCTIONS)


def _message(validation: Mapping[str, Any], value: Any) -> str:
    """The rule's messageExpression evaluated as the API server would, else its message."""
    if "messageExpression" in validation:
        try:
            return str(_program(validation["messageExpression"]).evaluate({"self": celpy.adapter.json_to_cel(value)}))
        except celpy.evaluation.CELEvalError:
            pass  # the API server falls back to message as well
    return str(validation.get("message", validation["rule"]))


def _rules(schema: Mapping[str, Any], value: Any, path: str, errors: list[str]) -> None:
    for validation in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in validation["rule"]:
            continue  # a transition rule: the API server evaluates it on updates only, offline is a create
        try:
            ok = bool(_program(validation["rule"]).evaluate({"self": celpy.adapter.json_to_cel(value)}))
        except celpy.evaluation.CELEvalError:
            ok = False  # e.g. an int compared with a string: the API server refuses as well
        if not ok:
            # the API server shows the schema's type in place of the value ("string", "object";
            # "" for int-or-string), not the value itself
            errors.append(f"{path}: Invalid value: {json.dumps(schema.get('type', ''))}: "
                          f"{_message(validation, value)}")
    if isinstance(value, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if name in value:
                _rules(prop, value[name], f"{path}.{name}", errors)
        if isinstance(schema.get("additionalProperties"), dict):
            for name, item in value.items():
                _rules(schema["additionalProperties"], item, f"{path}[{name}]", errors)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _rules(schema.get("items") or {}, item, f"{path}[{i}]", errors)


# The structural errors after which the API server runs no CEL rule (apiextensions-apiserver's
# hasBlockingErr: a wrong type, an enum, a required field, maxLength, maxItems/maxProperties),
# besides those it refuses before validating (an unknown field, a number JSON cannot carry).
# After the others (pattern, minimum, maximum, minLength, minItems) it runs the rules as well,
# so that a bad value is told by its pattern and by the rule that says it in words.
_BLOCKING = (" must be of type ", ": Unsupported value: ", ": Required value", ": Too long: ", ": Too many: ",
             ": unknown field ", ": json: unsupported value: ")
_NOT_CHECKED = ("<nil>: Invalid value: null: some validation rules were not checked because the object was "
                "invalid; correct the existing errors to complete validation")


def check(doc: Mapping[str, Any]) -> tuple[Kind, dict[str, Any]]:
    """(kind, the spec with the API server's defaults), or InvalidManifest with every error."""
    kind = kind_of(doc)
    name = str((doc.get("metadata") or {}).get("name") or "")
    errors: list[str] = []
    if not name:
        errors.append("metadata.name: Required value: name or generateName is required")
    if "spec" not in doc:
        errors.append("spec: Required value")
        raise InvalidManifest(kind.kind, name, errors)
    schema = _spec_schema(kind)
    given = _as_decoded(doc["spec"])
    _structural(schema, given, "spec", errors)
    if any(marker in error for error in errors for marker in _BLOCKING):
        errors.append(_NOT_CHECKED)
        raise InvalidManifest(kind.kind, name, errors)
    spec = _defaulted(schema, given)
    _rules(schema, spec, "spec", errors)
    if name:  # the rules on the whole object (metadata.name); the API server words them with no path
        whole = {"apiVersion": doc.get("apiVersion"), "kind": doc.get("kind"), "metadata": {"name": name},
                 "spec": spec}
        _rules({"type": "object", "x-kubernetes-validations":
                _root_schema(kind).get("x-kubernetes-validations") or []}, whole, "<nil>", errors)
    if errors:
        raise InvalidManifest(kind.kind, name, errors)
    return kind, spec

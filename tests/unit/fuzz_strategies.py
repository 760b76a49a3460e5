"""Hypothesis strategies for the fuzz tests (tests/unit/test_fuzz_*.py): specs generated from
the CRD schema the API server enforces, hostile strings, and the one way to judge a spec.

Specs are drawn from the generated schema itself (api/offline.py's copy of it), not from a
hand-written list of fields: a field added to a model, or a constraint changed, is fuzzed
without touching these tests. Most leaves are valid-looking (a value of the field's enum,
pattern or range) so that whole specs pass often enough to reach the renderers; some are
hostile (quotes, newlines, '#', spaces, unicode, very long values, a valid value with a
trailing newline), because those are what could break a configuration file.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from hakeeper.api import offline
from hakeeper.api.common import DNS_LABEL_PATTERN, DURATION_PATTERN
from hakeeper.api.kinds import KINDS, Kind
from hakeeper.api.loadbalancerpool import IPv4
from hakeeper.platform.spec import explain

# Reproducible in CI and nothing written into the repository: a fixed derivation of the
# examples from each test's name (derandomize) and no example database (.hypothesis/).
# HAKEEPER_FUZZ_SCALE=20 makes a longer hunt with fresh random examples, for a developer.
SCALE = int(os.environ.get("HAKEEPER_FUZZ_SCALE", "1"))
FUZZ = settings(derandomize=SCALE == 1, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])


def fuzz(examples: int) -> settings:
    """FUZZ with this many examples (times HAKEEPER_FUZZ_SCALE)."""
    return settings(FUZZ, max_examples=examples * SCALE)

HOSTILE_TEXTS = [
    "", " ", "a b", '"', "'", '"quoted"', "#", "a#b", "# comment", "\n", "x\n", "x\nglobal", "x\r\ny",
    "\t", "\\", "\\n", "{", "}", "x}", "${POD_IP}", "$(id)", "%", "%s%n", "!x", ";", "a,b", "é", "ünïcödé",
    "☃", "🙂", "\u200b", "\u2028", "\x00", "\x7f", "a" * 300, "é" * 700, "9" * 5000, "-1", "0", "+1",
    " 1", "1 ", "1_0", "0x10", "1e3", "²", "٣", "NaN", "inf",
]
hostile_text = st.one_of(
    st.sampled_from(HOSTILE_TEXTS),
    st.text(max_size=20),
    st.text(alphabet=" \t\n\r\"'#{}$%!\\;,é🙂\u2028", min_size=1, max_size=10),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1024, max_size=4000),
)


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """`good` (odds-1) times in odds, else `odd`: st.one_of draws its distinct branches evenly
    whatever the repetitions."""
    return st.integers(1, odds).flatmap(lambda n: odd if n == odds else good)


def spoiled(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A valid value made hostile at one end: what a lenient `$` or a missing strip lets through."""
    return st.tuples(valid, st.sampled_from(["\n", " ", "#", '"', "\n#x", " x", "\t"]), st.booleans()).map(
        lambda t: t[0] + t[1] if t[2] else t[1].strip("\n") + t[0])


LVS_IPV4 = next(m.pattern for meta in IPv4.__metadata__ for m in getattr(meta, "metadata", [meta])
                if getattr(m, "pattern", None))

# The common patterns, drawn directly: from_regex is slow on them, and its long draws would
# mostly be thrown away by maxLength.
PATTERNS: dict[str, st.SearchStrategy[str]] = {
    DURATION_PATTERN: st.one_of(
        st.builds(lambda n, u: f"{n}{u}", st.integers(0, 120), st.sampled_from(["ms", "s", "m"])),
        st.sampled_from(["1m30s", "0.5s", "1.25h", "0ms", "24h", "9999h", "99999999999999999999999999999h",
                         "1s1s", "2147483647ms", "2147483648ms"])),
    DNS_LABEL_PATTERN: st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z"),
    LVS_IPV4: st.ip_addresses(v=4).map(str),
}


def from_schema(schema: Mapping[str, Any], path: str = "spec",
                overrides: Mapping[str, st.SearchStrategy[Any]] | None = None) -> st.SearchStrategy[Any]:
    """Valid-looking values for an OpenAPI v3 schema as the CRD states it (enums, patterns,
    ranges, lengths); `overrides` by path ("spec.lvs.port", "spec.triggers[]"). Cross-field
    rules (CEL) are not followed here: the callers arrange the few that matter, and `mutated`
    makes leaves hostile afterwards."""
    overrides = overrides or {}
    if path in overrides:
        return overrides[path]
    if schema.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(1, 65535), st.from_regex(r"\A[a-z][a-z0-9-]{0,14}\Z"))
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern in PATTERNS:
            return PATTERNS[pattern]
        if pattern and pattern != "^/":
            return st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) <= schema.get("maxLength", 10**6))
        return st.from_regex(r"\A[a-z][a-z0-9_.-]{0,15}\Z").map(lambda s: ("/" if pattern == "^/" else "") + s)
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31 - 1))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = from_schema(schema.get("items") or {}, path + "[]", overrides)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object":
        props = schema.get("properties")
        if props is None:
            values = from_schema(schema.get("additionalProperties") or {"type": "string"}, path + "[]", overrides)
            return st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9./-]{0,20}\Z"), values, max_size=2)
        required = set(schema.get("required") or [])
        return st.fixed_dictionaries(
            {name: from_schema(props[name], f"{path}.{name}", overrides) for name in props if name in required},
            optional={name: from_schema(props[name], f"{path}.{name}", overrides)
                      for name in props if name not in required})
    return st.text(max_size=10)


KEY = object()
"""Marks a leaf path that names a map's key rather than a value."""
FREE_MAPS = ("matchLabels", "nodeSelector", "requests", "limits")
"""Maps whose keys the user chooses (the others' keys are field names: a hostile one is merely unknown)."""


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of the string and number leaves (and of the free maps' keys, as ("key", ...))."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            out += _leaves(item, (*path, key))
            if path and path[-1] in FREE_MAPS and not isinstance(item, (dict, list)):
                out.append((KEY, *path, key))
        return out
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _leaves(item, (*path, i))]
    if isinstance(value, (str, float)) or (isinstance(value, int) and not isinstance(value, bool)):
        return [path]
    return []


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if path[0] is KEY:
        *parent, key = path[1:]
        target = value
        for step in parent:
            target = target[step]
        target[new if isinstance(new, str) else str(new)] = target.pop(key)
        return value
    target = value
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return value


# Past int64 too: the API server's JSON decoder reads such an integer as a float64, and so does
# offline.check (it used to let cel-python's bare ValueError("overflow") out).
hostile_numbers = st.one_of(st.sampled_from([-1, 0, 2**31, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 10**30,
                                             65536, 257, 1e308, -0.0]),
                            st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]], most: int = 2) -> dict[str, Any]:
    """A valid-looking value with up to `most` leaves made hostile (about a third stay as drawn)."""
    value = copy.deepcopy(draw(valid))  # st.just() values are shared between examples
    for _ in range(draw(st.integers(0, most))):
        leaves = _leaves(value)
        if not leaves:
            break
        path = leaves[draw(st.integers(0, len(leaves) - 1))]
        current: Any = value
        if path[0] is not KEY:
            for step in path:
                current = current[step]
        if isinstance(current, str) or path[0] is KEY:
            new = draw(st.one_of(hostile_text, spoiled(st.just(current if isinstance(current, str) else ""))))
        else:
            new = draw(st.one_of(hostile_numbers, hostile_text))
        value = _replace(value, path, new)
    return value


def kind(name: str) -> Kind:
    return next(k for k in KINDS if k.kind == name)


def spec_strategy(kind_name: str, overrides: Mapping[str, st.SearchStrategy[Any]] | None = None
                  ) -> st.SearchStrategy[dict[str, Any]]:
    return from_schema(offline._spec_schema(kind(kind_name)), "spec", overrides)


def judged(kind_name: str, name: str, spec: Any, model: type[BaseModel]) -> tuple[Any, str]:
    """(the model, "") for a spec the operator would act on, or (None, why) for one it refuses,
    through the very path it takes (platform.spec.parse_spec): the CRD schema and its CEL
    rules offline, then the model. Any other exception is a fault and escapes."""
    k = kind(kind_name)
    try:
        offline.check({"apiVersion": k.api_version, "kind": k.kind, "metadata": {"name": name}, "spec": spec})
        return model.model_validate(spec), ""
    except offline.InvalidManifest as error:
        return None, "; ".join(error.errors)
    except ValidationError as error:
        return None, explain(error)

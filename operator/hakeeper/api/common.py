"""Building blocks shared by the three resource kinds.

Every field name a user writes is defined in this package and nowhere else: the CRD
schemas in crds/ are generated from these models, and the controllers read specs
through them.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "hakeeper.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Go-style durations as Kubernetes users write them ("500ms", "5s", "1m30s"); CEL's
# duration() parses the same syntax, so cross-field rules can compare them.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
"""A duration that may be zero (the pattern admits no sign, so none is negative)."""

# A DNS-1123 label: names of Kubernetes objects the operator derives other names from.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ObjectName = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One x-kubernetes-validations entry; the message is what `kubectl apply` prints."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_string(text: str) -> str:
    """`text` as a CEL string literal: single-quoted, backslashes and quotes escaped, so that a
    regular expression such as `^a\\.b$` reaches the CEL regex engine (RE2) as written."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def allowed_characters(pattern: str, message: str) -> dict[str, Any]:
    """The json_schema_extra of a string field that is written into a configuration file.

    The field keeps `pattern` as its OpenAPI pattern (pydantic checks it too); this adds a CEL
    rule with the same expression, because the pattern's own refusal shows only the regular
    expression, while `message` says in words which characters the field may hold. The API
    server reports both.
    """
    return {"x-kubernetes-validations": [cel(f"self.matches({cel_string(pattern)})", message)]}


POSITIVE_DURATION_MESSAGE = "must be longer than 0s (e.g. 500ms, 5s, 1m30s): it is a period or a timeout"


def duration_rules(longest: str | None = None, why: str = "") -> dict[str, Any]:
    """The json_schema_extra of a period or timeout: a CEL rule that it is longer than zero and,
    given `longest` (a Go duration, e.g. "2147483647ms"), one that it is at most that long, `why`
    saying whose limit it is in the refusal. A malformed value gets the pattern's refusal alone,
    since duration() would fail on it as well."""
    matches = f"!self.matches({cel_string(DURATION_PATTERN)})"
    rules = [cel(f"{matches} || duration(self) > duration('0s')", POSITIVE_DURATION_MESSAGE)]
    if longest is not None:
        rules.append(cel(f"{matches} || duration(self) <= duration('{longest}')", f"must be at most {longest}{why}"))
    return {"x-kubernetes-validations": rules}


PositiveDuration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra=duration_rules())]
"""A period or timeout: a Duration longer than zero. "0s", "0ms", "0m0.0s" are refused by a CEL
rule (Kubernetes CEL's duration() reads Go's duration syntax to the nanosecond, so less than 1ns
counts as zero; cel-python, which `hakeeper render` uses, to the microsecond)."""


class Model(BaseModel):
    """Base for spec models: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it appears in the API (camelCase, unset optionals left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(Model):
    """Status is written by the operator; stale fields from older versions are ignored."""

    model_config = ConfigDict(extra="ignore")

    def patch(self) -> dict[str, Any]:
        """The status as a JSON merge patch (RFC 7396) of the status subresource, camelCase.

        It carries the top-level fields the builder set (pydantic's model_fields_set): fields
        left unset are not sent, so a write of the conditions alone leaves the rest of the
        status as it is instead of resetting it to the defaults. A field that is None is sent
        as null, at the top level and inside objects, because a merge patch merges objects
        and only a null deletes (virtualIPHolder once no node holds the virtual IP, a
        switchover the loop no longer remembers). Inside arrays, which a merge patch replaces
        whole, None fields are left out, as the API server would prune them.
        """
        fields = set(self.model_fields_set)
        return _without_nulls_in_arrays(self.model_dump(by_alias=True, mode="json", include=fields))


def _without_nulls_in_arrays(value: Any, in_array: bool = False) -> Any:
    if isinstance(value, list):
        return [_without_nulls_in_arrays(v, True) for v in value]
    if isinstance(value, dict):
        return {k: _without_nulls_in_arrays(v, in_array) for k, v in value.items() if not (in_array and v is None)}
    return value


class LabelSelectorRequirement(Model):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(Model):
    """A standard Kubernetes label selector."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "size(self.matchLabels) > 0 || size(self.matchExpressions) > 0",
                    "a selector needs matchLabels or matchExpressions; an empty selector would select everything",
                )
            ]
        }
    )


class SecretKeyRef(Model):
    """A key of a Secret in the resource's own namespace."""

    name: ObjectName
    key: str = Field(min_length=1, max_length=253)


class ResourceRequirements(Model):
    """Container resources, as in a Pod spec."""

    requests: dict[str, Annotated[str, Field(pattern=r"^[0-9.]+[a-zA-Z]*$")]] = Field(default_factory=dict)
    limits: dict[str, Annotated[str, Field(pattern=r"^[0-9.]+[a-zA-Z]*$")]] = Field(default_factory=dict)


class Condition(StatusModel):
    """One aspect of the object's state, as the Kubernetes API conventions define conditions."""

    type: str
    """What the condition is about (Ready, and the kind's own: see the kind's status)."""
    status: Literal["True", "False", "Unknown"]
    reason: str
    """Why, in one CamelCase word that programs and alert rules can match on."""
    message: str = ""
    """Why, for people."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The metadata.generation the condition was computed for."""


class BaseStatus(StatusModel):
    """What every kind's status has."""

    observed_generation: int | None = None
    """The metadata.generation of the spec this status describes."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready (what `kubectl wait --for=condition=Ready` waits for) and the kind's own conditions."""


def rfc3339(epoch: float | None) -> str | None:
    """Epoch seconds as RFC 3339 in UTC with milliseconds ("2023-11-14T22:13:20.125Z"), the
    form of the status' times (the API conventions' timestamps; windows of a few seconds need
    more than whole seconds); None for None."""
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_of(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time; None for None, "" or anything else unparsable."""
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string such as "1m30s" or "250ms"."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (write e.g. 500ms, 5s, 1m30s)")
    return sum(float(n) * units[u] for n, u in parts)

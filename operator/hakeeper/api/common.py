"""Building blocks shared by the three resource kinds.

Every field name a user writes is defined in this package and nowhere else: the CRD
schemas in crds/ are generated from these models, and the controllers read specs
through them.
"""

from __future__ import annotations

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

# A DNS-1123 label: names of Kubernetes objects the operator derives other names from.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ObjectName = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One x-kubernetes-validations entry; the message is what `kubectl apply` prints."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


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
    """A status condition following the Kubernetes API conventions."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class BaseStatus(StatusModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string such as "1m30s" or "250ms"."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (write e.g. 500ms, 5s, 1m30s)")
    return sum(float(n) * units[u] for n, u in parts)

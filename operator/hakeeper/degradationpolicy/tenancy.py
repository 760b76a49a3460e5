"""Which namespaces a policy may shed in (pure): no confused deputy.

The operator may scale any Deployment in the cluster; a DegradationPolicy is written by a
namespace's tenant. So a policy sheds in its own namespace, and in another only when that
namespace opted in, with the label `shed-from.hakeeper.io/<policy namespace>: "true"` (who may
label a namespace is the cluster admin's choice: namespaces are cluster-scoped), or when the
cluster admin trusts the policy's namespace (the chart's degradationPolicy.trustedNamespaces).
A namespace labelled hakeeper.io/protected=true is never shed, even the policy's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hakeeper.api.meta import PROTECTED_LABEL, SHED_FROM_LABEL_PREFIX

ANY_NAMESPACE = "*"
"""In the trusted namespaces: every policy's namespace is trusted."""


def opt_in_label(policy_namespace: str) -> str:
    """The label a namespace carries (value "true") to let policies of `policy_namespace` shed in it."""
    return f"{SHED_FROM_LABEL_PREFIX}{policy_namespace}"


@dataclass(frozen=True)
class Admission:
    """The namespaces a policy asked for, split: where it may shed, and why not elsewhere."""

    allowed: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)
    """namespace -> why the policy may not shed there, in a sentence a person acts on."""


def admit(policy_namespace: str, wanted: Iterable[str], labels: Mapping[str, Mapping[str, str] | None],
          trusted: frozenset[str]) -> Admission:
    """Splits `wanted` (spec.namespaces, or the policy's own) into allowed and refused.

    labels: namespace -> its labels, None for a namespace that does not exist (a namespace
    missing from the mapping is treated as unlabelled); trusted: policy namespaces the cluster
    admin trusts to shed anywhere (ANY_NAMESPACE: all). Order of `wanted` is kept."""
    allowed: list[str] = []
    refused: dict[str, str] = {}
    trusts_all = ANY_NAMESPACE in trusted or policy_namespace in trusted
    for namespace in dict.fromkeys(wanted):
        found = labels.get(namespace, {})
        if found is None:
            refused[namespace] = "namespace not found"
            continue
        if found.get(PROTECTED_LABEL) == "true":
            refused[namespace] = f"namespace labelled {PROTECTED_LABEL}=true"
            continue
        if namespace == policy_namespace or trusts_all or found.get(opt_in_label(policy_namespace)) == "true":
            allowed.append(namespace)
            continue
        refused[namespace] = (f"not opted in: label the namespace {opt_in_label(policy_namespace)}=true, or have "
                              f"the cluster admin trust {policy_namespace} (chart value "
                              "degradationPolicy.trustedNamespaces)")
    return Admission(tuple(allowed), refused)


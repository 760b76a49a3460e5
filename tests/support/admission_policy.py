"""A ValidatingAdmissionPolicy evaluated offline with cel-python, as the API server does.

Kubernetes docs, "Validating Admission Policy": the request is matched by the policy's
matchConstraints (checked here by `matches`), then every matchCondition must be true; the
variables are composed in order (an erroring variable fails only the expressions that read
it); each validation that is not true refuses the request with its messageExpression (else its
message, else "failed expression: <expression>"); an expression that fails to evaluate refuses
it too under failurePolicy Fail, which is what `admit` assumes.

The request is shaped as the API server gives it to CEL (admission.k8s.io AdmissionRequest):
`subResource` is absent, not empty, for the resource itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import celpy
import celpy.adapter
import celpy.celtypes
import celpy.evaluation

_cel = celpy.Environment()


def _split(text: Any, separator: Any) -> celpy.celtypes.ListType:
    return celpy.celtypes.ListType(celpy.celtypes.StringType(part) for part in str(text).split(str(separator)))


def _substring(text: Any, start: Any, end: Any = None) -> celpy.celtypes.StringType:
    text, start = str(text), int(start)
    end = len(text) if end is None else int(end)
    if not 0 <= start <= end <= len(text):  # the Kubernetes strings library refuses, as Go would panic
        raise ValueError(f"substring({start}, {end}) out of range of a string of {len(text)}")
    return celpy.celtypes.StringType(text[start:end])


def _join(items: Any, separator: Any = "") -> celpy.celtypes.StringType:
    return celpy.celtypes.StringType(str(separator).join(str(item) for item in items))


# The Kubernetes CEL libraries' functions the policy uses and cel-python lacks (Kubernetes docs,
# "CEL in Kubernetes": the strings extension's split, substring and join)
FUNCTIONS: dict[str, Any] = {"split": _split, "substring": _substring, "join": _join}


def _evaluate(expression: str, activation: Mapping[str, Any]) -> Any:
    program = _cel.program(_cel.compile(expression), functions=FUNCTIONS)
    return program.evaluate(dict(activation))


def matches(policy: Mapping[str, Any], *, resource: str, operation: str, group: str = "") -> bool:
    """Whether the policy's resourceRules select `resource` ("pods", "pods/status") and `operation`."""
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        if group in rule["apiGroups"] and operation in rule["operations"] and (
                resource in rule["resources"] or ("/" in resource and resource.split("/")[0] + "/*" in rule["resources"])):
            return True
    return False


def admit(policy: Mapping[str, Any], request: Mapping[str, Any], obj: Any, old: Any) -> str | None:
    """None when the policy lets the request through (or does not match it); else the refusal's
    message. `request` holds operation, namespace, name, subResource (optional) and userInfo."""
    base = {"request": celpy.adapter.json_to_cel(dict(request)),
            "object": celpy.adapter.json_to_cel(obj), "oldObject": celpy.adapter.json_to_cel(old)}
    spec = policy["spec"]
    for condition in spec.get("matchConditions") or []:
        try:
            if not bool(_evaluate(condition["expression"], base)):
                return None
        except celpy.evaluation.CELEvalError as exc:
            return f"matchCondition {condition['name']} failed: {exc}"
    variables: dict[str, Any] = {}
    for variable in spec.get("variables") or []:
        activation = {**base, "variables": celpy.celtypes.MapType(
            {celpy.celtypes.StringType(k): v for k, v in variables.items()})}
        try:
            variables[variable["name"]] = _evaluate(variable["expression"], activation)
        except (celpy.evaluation.CELEvalError, ValueError) as exc:
            variables[variable["name"]] = celpy.evaluation.CELEvalError(str(exc))
    activation = {**base, "variables": celpy.celtypes.MapType(
        {celpy.celtypes.StringType(k): v for k, v in variables.items()})}
    for validation in spec["validations"]:
        try:
            ok = _evaluate(validation["expression"], activation)
        except (celpy.evaluation.CELEvalError, ValueError) as exc:
            return f"expression {validation['expression']!r} resulted in error: {exc}"
        if isinstance(ok, celpy.evaluation.CELEvalError):
            return f"expression {validation['expression']!r} resulted in error: {ok}"
        if not bool(ok):
            if "messageExpression" in validation:
                try:
                    return str(_evaluate(validation["messageExpression"], activation))
                except (celpy.evaluation.CELEvalError, ValueError):
                    pass
            return validation.get("message") or f"failed expression: {validation['expression']}"
    return None

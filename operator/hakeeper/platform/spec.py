"""Reading a custom resource's spec through its model, and reporting a spec that fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from hakeeper.api import Kind, offline
from hakeeper.api.common import BaseStatus
from hakeeper.api.conditions import CommonReason, ConditionType, with_condition
from hakeeper.api.events import CommonEvent

M = TypeVar("M", bound=BaseModel)
H = TypeVar("H", bound=Callable[..., Any])


def explain(error: ValidationError) -> str:
    """One line per problem, with the field path as kubectl users write it."""
    lines = []
    for err in error.errors():
        path = "spec." + ".".join(str(p) for p in err["loc"]) if err["loc"] else "spec"
        lines.append(f"{path}: {err['msg']}")
    return "; ".join(lines)


def parse_spec(model: type[M], body: kopf.Body, patch: kopf.Patch) -> M | None:
    """The spec as a model, or None after setting Ready=False/InvalidSpec and posting an Event.

    The CRD schema refuses bad input at `kubectl apply`; this catches what slips past it
    (objects stored under an older schema), with the API server's own wording.
    """
    try:
        offline.check({"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                       "metadata": {"name": body.metadata.name}, "spec": dict(body.get("spec") or {})})
        return model.model_validate(dict(body.get("spec") or {}))
    except offline.InvalidManifest as error:
        message = "; ".join(error.errors)
    except ValidationError as error:
        message = explain(error)
    mark(body, patch, ready=False, reason=CommonReason.INVALID_SPEC, message=message)
    kopf.warn(body, reason=CommonEvent.INVALID_SPEC, message=message)
    return None


def mark(body: kopf.Body, patch: kopf.Patch, *, ready: bool, reason: str, message: str,
         extra: dict[str, Any] | None = None) -> None:
    """Writes Ready and observedGeneration (plus any other status fields, camelCase) into the patch.

    Ready's reason is one of api.conditions' (CommonReason, or the kind's); the conditions the
    patch or the object already has are kept, with their transition times.
    """
    generation = body.metadata.get("generation")
    current = patch.status.get("conditions") or body.get("status", {}).get("conditions")
    status = BaseStatus(observed_generation=generation,
                        conditions=with_condition(current, ConditionType.READY, ready, reason, message, generation))
    for key, value in status.patch().items():
        patch.status[key] = value
    for key, value in (extra or {}).items():
        patch.status[key] = value


def on_spec(kind: Kind) -> Callable[[H], H]:
    """Registers a kopf handler (id "spec") for an object's creation, its spec's changes, and
    every object found when the operator starts (resume)."""
    group, version = kind.api_version.split("/")

    def register(handler: H) -> H:
        for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
            on(group, version, kind.plural, id="spec")(handler)  # kopf returns the handler unchanged
        return handler

    return register

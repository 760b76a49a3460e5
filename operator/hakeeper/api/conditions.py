"""Status conditions as the Kubernetes API conventions define them (pure functions)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Returns the conditions with one set; lastTransitionTime moves only when status does."""
    status = {True: "True", False: "False"}.get(status, status)  # type: ignore[arg-type]
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or ():
        cond = dict(cond)
        if cond.get("type") == type_:
            found = True
            changed = cond.get("status") != status
            cond.update(status=status, reason=reason, message=message, observedGeneration=generation)
            if changed or not cond.get("lastTransitionTime"):
                cond["lastTransitionTime"] = now or now_iso()
        out.append(cond)
    if not found:
        out.append({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": now or now_iso(), "observedGeneration": generation,
        })
    return out


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)

"""Drift repair for the objects the operator applies, shared by every kind that owns some.

One kopf watch per owned kind (`watch`) hands each event to the loop of the object's owner: its
controller reference (a hakeeper kind), else an owner label the kind names (a pool's cluster-wide
objects cannot carry a reference across namespaces). The loop's AppliedObjects decides whether the
event shows drift (deleted, or a field the operator applied changed: AppliedObjects.drifted) and,
if so, the loop is woken to apply the object again, as controller-runtime's Owns() requeues the
owner. One handler per kind for all owners: a ConfigMap event runs one handler, not one per kind
that owns ConfigMaps.

Call from the event loop's thread (kopf's async handlers); loops register when they start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from hakeeper.api import LOAD_BALANCER_POOL
from hakeeper.platform.kube import AppliedObjects

OwnerKey = tuple[str, str, str]
"""(owner kind, namespace, owner name)."""
Hook = Callable[[OwnerKey, Mapping[str, Any], str | None], None]


class Owners:
    """The running loops that apply objects, by owner, and what else wants their objects' events."""

    def __init__(self, group: str) -> None:
        self.group = group
        """The API group of the owner kinds (controller references of other groups are ignored)."""
        self._loops: dict[OwnerKey, tuple[AppliedObjects, Callable[[], None]]] = {}
        self._labels: dict[str, str] = {}
        self._hooks: list[Hook] = []
        self._watched: set[tuple[str, str, str]] = set()

    def register(self, key: OwnerKey, applied: AppliedObjects, wake: Callable[[], None]) -> None:
        self._loops[key] = (applied, wake)

    def unregister(self, key: OwnerKey) -> None:
        self._loops.pop(key, None)

    def label(self, kind: str, label: str) -> None:
        """Objects without a controller reference but with this label belong to that kind's object
        of the label's value."""
        self._labels[label] = kind

    def hook(self, hook: Hook) -> None:
        """hook(owner, body, event type) for every event of an owned object (after the drift check)."""
        self._hooks.append(hook)

    def owner(self, body: Mapping[str, Any]) -> OwnerKey | None:
        """Who owns `body` (its controller reference of this group, else an owner label), or None."""
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace")
        if not namespace:
            return None
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller") and str(ref.get("apiVersion", "")).startswith(f"{self.group}/"):
                return str(ref.get("kind")), namespace, str(ref.get("name"))
        labels = meta.get("labels") or {}
        for label, kind in self._labels.items():
            if labels.get(label):
                return kind, namespace, str(labels[label])
        return None

    def changed(self, body: Mapping[str, Any], type_: str | None) -> OwnerKey | None:
        """A watch event of an object: wakes its owner's loop when the object drifted; its owner."""
        key = self.owner(body)
        if key is None:
            return None
        entry = self._loops.get(key)
        if entry is not None and entry[0].drifted(body, deleted=type_ == "DELETED"):
            entry[1]()
        for hook in self._hooks:
            hook(key, body, type_)
        return key

    def watch(self, kinds: tuple[tuple[str, str, str], ...]) -> None:
        """Registers the kopf watch of each (group, version, plural) not watched yet."""
        for resource in kinds:
            if resource not in self._watched:
                self._watched.add(resource)
                kopf.on.event(*resource, id="owned-changed")(self._on_event)

    async def _on_event(self, body: kopf.Body, type: str | None, **_: Any) -> None:
        self.changed(body, type)


OWNERS = Owners(LOAD_BALANCER_POOL.api_version.split("/")[0])
"""The operator's one registry (every hakeeper kind is of the same group)."""

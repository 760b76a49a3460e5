"""Persistent volumes for the local node: a provisioner that backs each claim with a directory.

The StorageClass `hakeeper-local` (the default class) is served by the cluster harness (as kind
ships rancher's local-path-provisioner): a
Pending claim of that class gets a PersistentVolume whose hostPath is a directory of its
own, pre-bound to the claim, and kube-controller-manager's binder does the rest. The data
outlives the pod (a StatefulSet member restarted keeps its datadir) and goes with the claim:
a Released volume and its directory are deleted.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
from typing import Any

from .api import Api, ApiError

log = logging.getLogger("localcluster.storage")
STORAGE_CLASS = "hakeeper-local"
PROVISIONER = "hakeeper.io/local-node"


class Provisioner:
    def __init__(self, api: Api, root: pathlib.Path):
        self.api = api
        self.root = pathlib.Path(root)

    def install(self) -> None:
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}
        try:
            self.api.post("/apis/storage.k8s.io/v1/storageclasses", body)
        except ApiError as error:
            if error.status != 409:
                raise

    def sync(self) -> None:
        for claim in self.api.get("/api/v1/persistentvolumeclaims")["items"]:
            spec = claim["spec"]
            if (claim.get("status") or {}).get("phase") == "Pending" and not spec.get("volumeName") \
                    and spec.get("storageClassName") == STORAGE_CLASS:
                self._provision(claim)
        for volume in self.api.get("/api/v1/persistentvolumes")["items"]:
            if volume["spec"].get("storageClassName") == STORAGE_CLASS and \
                    (volume.get("status") or {}).get("phase") == "Released":
                self._delete(volume)

    def _provision(self, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        # any uid may own its data, as with local-path-provisioner: a database image runs as its
        # own user, and fsGroup does not apply to hostPath volumes
        path.chmod(0o777)
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        volume = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size}, "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                # Retain: kube-controller-manager's own hostPath deleter only removes /tmp paths;
                # Released volumes are deleted here instead
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                             "name": meta["name"], "uid": meta["uid"]},
            },
        }
        try:
            self.api.post("/api/v1/persistentvolumes", volume)
            log.info("provisioned %s for %s/%s", name, meta["namespace"], meta["name"])
        except ApiError as error:
            if error.status != 409:
                raise

    def _delete(self, volume: dict[str, Any]) -> None:
        path = volume["spec"].get("hostPath", {}).get("path")
        self.api.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")
        if path and pathlib.Path(path).is_relative_to(self.root):
            shutil.rmtree(path, ignore_errors=True)


def claim_path(api: Api, namespace: str, claim: str) -> pathlib.Path:
    """The directory behind a bound claim (any hostPath volume), or a VolumeError-worthy message."""
    pvc = api.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    if pvc is None:
        raise LookupError(f"persistentvolumeclaim {claim} not found")
    volume_name = pvc["spec"].get("volumeName")
    if not volume_name or (pvc.get("status") or {}).get("phase") != "Bound":
        raise LookupError(f"persistentvolumeclaim {claim} is not bound yet")
    volume = api.get(f"/api/v1/persistentvolumes/{volume_name}")
    path = (volume["spec"].get("hostPath") or {}).get("path")
    if not path:
        raise LookupError(f"persistentvolume {volume_name} is not a local directory")
    return pathlib.Path(path)

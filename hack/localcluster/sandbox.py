"""A pod's local sandbox: a directory per pod, its volumes, and processes that see them.

Each container process runs in its own mount namespace (`unshare --mount`) with the pod's
volumes bind-mounted at their mountPath, so programs find files where the pod spec says
(e.g. /var/run/secrets/kubernetes.io/serviceaccount/token, an emptyDir shared by two
containers) without rewriting their arguments. The network is not namespaced: every pod
has its own loopback IP, and its programs must bind to it (POD_IP), as they may in a pod.
"""

from __future__ import annotations

import base64
import os
import pathlib
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from .api import Api, ApiError
from .storage import claim_path

TOKEN_SECONDS = 24 * 3600


class VolumeError(RuntimeError):
    """The pod's volumes cannot be set up (yet): a missing Secret, an unsupported kind."""


class Sandbox:
    def __init__(self, root: pathlib.Path, pod: Mapping[str, Any], api: Api):
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = root / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.api = api
        self.pod = pod
        self.volumes: dict[str, pathlib.Path] = {}

    def prepare(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        for volume in self.pod["spec"].get("volumes") or []:
            target = self.dir / "volumes" / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                pass
            elif "configMap" in volume:
                self._write_keys(target, self._config_map(volume["configMap"]), volume["configMap"].get("items"))
            elif "secret" in volume:
                self._write_keys(target, self._secret(volume["secret"]), volume["secret"].get("items"))
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    self._project(target, source)
            elif "persistentVolumeClaim" in volume:
                try:
                    target = claim_path(self.api, self.namespace, volume["persistentVolumeClaim"]["claimName"])
                except LookupError as error:
                    raise VolumeError(str(error)) from error
            else:
                kinds = sorted(set(volume) - {"name"})
                raise VolumeError(f"volume {volume['name']}: kind {kinds} does not run locally")
            self.volumes[volume["name"]] = target

    def _config_map(self, ref: Mapping[str, Any]) -> dict[str, bytes]:
        cm = self.api.get_or_none(f"/api/v1/namespaces/{self.namespace}/configmaps/{ref['name']}")
        if cm is None:
            if ref.get("optional"):
                return {}
            raise VolumeError(f"configmap {ref['name']} not found")
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return data

    def _secret(self, ref: Mapping[str, Any]) -> dict[str, bytes]:
        name = ref.get("secretName") or ref.get("name")
        secret = self.api.get_or_none(f"/api/v1/namespaces/{self.namespace}/secrets/{name}")
        if secret is None:
            if ref.get("optional"):
                return {}
            raise VolumeError(f"secret {name} not found")
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    @staticmethod
    def _write_keys(target: pathlib.Path, data: Mapping[str, bytes], items: list | None) -> None:
        paths = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        for key, rel in paths.items():
            if key not in data:
                continue
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[key])

    def _project(self, target: pathlib.Path, source: Mapping[str, Any]) -> None:
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            account = self.pod["spec"].get("serviceAccountName") or "default"
            request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
                "expirationSeconds": max(int(spec.get("expirationSeconds") or 0), TOKEN_SECONDS),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                **({"audiences": [spec["audience"]]} if spec.get("audience") else {}),
            }}
            try:
                answer = self.api.post(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", request)
            except ApiError as error:
                raise VolumeError(f"service account token for {account}: {error}") from error
            (target / spec.get("path", "token")).write_text(answer["status"]["token"])
        elif "configMap" in source:
            self._write_keys(target, self._config_map(source["configMap"]), source["configMap"].get("items"))
        elif "secret" in source:
            self._write_keys(target, self._secret(source["secret"]), source["secret"].get("items"))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                field = (item.get("fieldRef") or {}).get("fieldPath")
                value = field_value(self.pod, field) if field else ""
                (target / item["path"]).write_text(value)

    def mounts(self, container: Mapping[str, Any]) -> list[tuple[pathlib.Path, str, bool]]:
        out = []
        for mount in container.get("volumeMounts") or []:
            source = self.volumes.get(mount["name"])
            if source is None:
                raise VolumeError(f"volumeMount {mount['name']} names no volume of the pod")
            if mount.get("subPath"):
                source = source / mount["subPath"]
            out.append((source, mount["mountPath"], bool(mount.get("readOnly"))))
        return out

    def wrap(self, argv: list[str], container: Mapping[str, Any]) -> list[str]:
        """argv run in a mount namespace that has the container's volume mounts."""
        mounts = self.mounts(container)
        workdir = container.get("workingDir")
        if not mounts and not workdir:
            return argv
        script = ["set -e"]
        for source, path, read_only in mounts:
            q_src, q_dst = shlex.quote(str(source)), shlex.quote(path)
            if source.is_dir():
                script.append(f"mkdir -p {q_dst}")
            else:
                script.append(f"mkdir -p $(dirname {q_dst}) && touch {q_dst}")
            script.append(f"mount --bind {q_src} {q_dst}")
            if read_only:
                script.append(f"mount -o remount,bind,ro {q_dst}")
        if workdir:
            script.append(f"mkdir -p {shlex.quote(workdir)} && cd {shlex.quote(workdir)}")
        script.append('exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "; ".join(script),
                "sh", *argv]

    def spawn(self, argv: list[str], container: Mapping[str, Any], env: Mapping[str, str]) -> subprocess.Popen:
        log = open(self.dir / "logs" / f"{container['name']}.log", "ab")
        try:
            return subprocess.Popen(self.wrap(argv, container), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")
        finally:
            log.close()

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The downward API's fieldRef paths."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return simple[path] or ""
    for prefix, mapping in (("metadata.labels", meta.get("labels")), ("metadata.annotations", meta.get("annotations"))):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return (mapping or {}).get(path[len(prefix) + 2:-2], "")
    return ""


def kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

"""The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards),
levels `baseline` and `restricted`, as a checker of pod specs: what Pod Security Admission
would refuse, so that a unit test sees it before an e2e namespace does.

`violations(obj, level)` takes a pod spec, a Pod, or any object with a pod template
(Deployment, StatefulSet, DaemonSet, Job) and returns the broken controls as
["<control>: <field> <value>", ...], empty when the object passes `level`
("privileged" passes everything; "restricted" includes "baseline").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                "persistentVolumeClaim", "projected", "secret", "image"})
LEVELS = ("privileged", "baseline", "restricted")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a workload, a Pod, or the spec itself."""
    if "containers" in obj:
        return obj
    spec = obj["spec"]
    if "containers" in spec:
        return spec
    if "jobTemplate" in spec:
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def _containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(kind) or []:
            yield f"{kind}[{c['name']}]", c


def baseline(spec: dict[str, Any]) -> list[str]:
    found: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"host namespaces: spec.{field} true")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("HostProcess: spec.securityContext.windowsOptions.hostProcess true")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"hostPath volumes: volume {volume['name']}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctls: {sysctl['name']}")
    contexts = [("spec.securityContext", pod_sc)]
    for where, c in _containers(spec):
        sc = c.get("securityContext") or {}
        contexts.append((f"{where}.securityContext", sc))
        if sc.get("privileged"):
            found.append(f"privileged containers: {where} privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"HostProcess: {where}")
        extra = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if extra:
            found.append(f"capabilities: {where} adds {sorted(extra)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"host ports: {where} hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"/proc mount type: {where} {sc['procMount']}")
    for where, sc in contexts:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"seccomp: {where}.seccompProfile Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"AppArmor: {where}.appArmorProfile {sc['appArmorProfile']['type']}")
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"SELinux: {where}.seLinuxOptions {selinux}")
    return found


def restricted(spec: dict[str, Any]) -> list[str]:
    found = baseline(spec)
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume types: volume {volume['name']} is {sorted(kinds)}")
    if pod_sc.get("runAsUser") == 0:
        found.append("running as non-root user: spec.securityContext.runAsUser 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for where, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"privilege escalation: {where} allowPrivilegeEscalation not false")
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"running as non-root: {where} runAsNonRoot not true (nor the pod's)")
        if sc.get("runAsUser") == 0:
            found.append(f"running as non-root user: {where} runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"seccomp: {where} seccompProfile {seccomp} (nor the pod's)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"capabilities: {where} does not drop ALL")
        extra = set(caps.get("add") or []) - RESTRICTED_CAPABILITIES
        if extra:
            found.append(f"capabilities: {where} adds {sorted(extra)}")
    return found


def violations(obj: dict[str, Any], level: str) -> list[str]:
    """What Pod Security Admission at `level` would refuse in obj's pod spec (no duplicates)."""
    assert level in LEVELS, level
    spec = pod_spec(obj)
    found = [] if level == "privileged" else baseline(spec) if level == "baseline" else restricted(spec)
    return list(dict.fromkeys(found))


def strictest(obj: dict[str, Any]) -> str:
    """The strictest level obj passes: "restricted", "baseline" or "privileged"."""
    return next(level for level in reversed(LEVELS) if not violations(obj, level))

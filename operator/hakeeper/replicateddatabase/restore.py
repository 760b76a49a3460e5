"""spec.restore: a new ReplicatedDatabase starts from a backup (pure: what the pods get, and
what the first member's init container says about its restore).

The first member (ordinal 0) restores in its init container, before the server's datadir would
be initialised (objects.init_script): backup.restore_script downloads the base, checks its
SHA-256, prepares it and replays the archived binary logs up to spec.restore.pointInTime. The
operator cannot read the store, the member can: when spec.restore.backup is not given, the
script chooses the base as backup.choose_base does (backup.CHOOSE_BASE: the newest complete
backup finished by the point in time; a point before the oldest backup is refused), and it
replays the binary logs of the member whose logs were stored last (backup.CHOOSE_BINLOGS).

The restore runs only when the member has no datadir: a database that has data is never
overwritten. The other members start empty; once the restored member is the primary they find
that it lacks the binary logs of what the backup holds (clustering.classify.BINLOG_GONE_ERRORS)
and are rebuilt from its data as a re-seed does, without asking (reseed.decide's `restored`).

What the operator reports comes from the init container's status (observe): its termination
message (terminationMessagePolicy FallbackToLogsOnError) is the restore's last line, which says
why it failed, or what it restored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from hakeeper.api.conditions import DatabaseReason, Verdict
from hakeeper.api.events import DatabaseEvent
from hakeeper.api.replicateddatabase import BackupTarget, RestoreSpec, RestoreStatus
from hakeeper.replicateddatabase import backup, backup_objects, restore_gtid
from hakeeper.replicateddatabase.objects import TMP_DIR, PodExtras

VOLUME_MOUNT = backup_objects.VOLUME_MOUNT
"""Where a volume target's PersistentVolumeClaim is mounted (read only) in the members."""
CA_DIR = "/etc/hakeeper/restore-ca"
CA_FILE = backup_objects.CA_FILE_NAME
INIT_CONTAINER = "init"
"""The container that restores (objects.statefulset's init container)."""
LOG = f"{TMP_DIR}/restore.log"
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError", "ErrImagePull", "ImagePullBackOff",
                 "InvalidImageName")
"""Waiting reasons of the init container that no retry mends by itself (a Secret or key missing)."""
_ID = re.compile(r"restoring backup ([0-9]{8}T[0-9]{6}Z)")

Phase = Literal["Restoring", "Completed", "Failed"]


def target_of(spec: BackupTarget) -> backup.Target:
    """The store as the scripts name it: as a backup run names it (backup_objects.target_of),
    the CA from caSecret mounted at CA_DIR; BackupError for a value the scripts refuse."""
    return backup_objects.target_of(spec, ca_file=f"{CA_DIR}/{CA_FILE}")


def plan(flavor: str, spec: RestoreSpec) -> backup.Restore:
    """What the first member restores: spec.backup (or "": chosen in the store), up to
    spec.pointInTime or up to and including spec.gtid (neither: the backup as it is).

    Raises BackupError for a point in time that is not RFC 3339, or a GTID not in the flavor's
    form (restore_gtid.GtidError, a BackupError's kin: both are ValueErrors)."""
    point = backup.parse_time(spec.point_in_time) if spec.point_in_time else None
    gtid = restore_gtid.canonical(flavor, spec.gtid) if spec.gtid else ""
    return backup.Restore(spec.backup or "", point, gtid=gtid)


def init_part(flavor: str, restore: backup.Restore) -> str:
    """sh for objects.init_script's `restore`: on ordinal 0 only, backup.restore_script run as a
    script of its own (its `set -e` holds whatever the caller's context), its output kept in LOG;
    a failure ends with the line `restore failed: <its last line>`, written to the termination
    message too, and a success writes what was restored there."""
    script = backup.restore_script(flavor, restore)
    return f"""if [ "$ordinal" = 0 ]; then
cat > {TMP_DIR}/restore.sh <<'HAKEEPER_RESTORE'
{script}HAKEEPER_RESTORE
rm -f {TMP_DIR}/restore.rc
{{ rc=0; sh -eu {TMP_DIR}/restore.sh 2>&1 || rc=$?; echo $rc > {TMP_DIR}/restore.rc; }} | tee {LOG}
if [ "$(cat {TMP_DIR}/restore.rc)" != 0 ]; then
  why=$(grep -v '^[[:space:]]*$' {LOG} | tail -n 1)
  printf 'restore failed: %s\\n' "${{why#restore: }}" > {TMP_DIR}/restore.why
  cat {TMP_DIR}/restore.why > /dev/termination-log 2>/dev/null || true
  cat {TMP_DIR}/restore.why >&2
  exit 1
fi
done=$(grep -E '^(restoring backup|restored data)' {LOG} | tr '\\n' ' ')
printf '%s\\n' "${{done:-the member has data already: nothing restored (a restore never overwrites data)}}" \\
  > /dev/termination-log 2>/dev/null || true
fi
"""


def pod_extras(flavor: str, spec: RestoreSpec) -> PodExtras:
    """What the members' pod template gets for spec.restore: the init script's part, the store's
    environment (Target.env, HK_STORE_ROOT, the access keys as secretKeyRef), the CA and the
    claim; BackupError for a value the scripts refuse."""
    target = target_of(spec.target)
    env: list[dict[str, Any]] = [{"name": k, "value": v}
                                 for k, v in sorted(backup.restore_env(target, spec.database).items())]
    keys, volumes, mounts = backup_objects.store_access(spec.target, ca_dir=CA_DIR, prefix="restore-", read_only=True)
    env += keys
    return PodExtras(init=init_part(flavor, plan(flavor, spec)), env=tuple(env), volumes=tuple(volumes),
                     mounts=tuple(mounts))


def describe(spec: RestoreSpec) -> str:
    """What is restored, in words (the RestoreStarted Event, the Restoring condition)."""
    what = f"backup {spec.backup}" if spec.backup else (
        f"the newest backup finished by {spec.point_in_time}" if spec.point_in_time else "the newest backup")
    upto = (f", replaying the binary logs up to {spec.point_in_time}" if spec.point_in_time
            else f", replaying the binary logs up to and including GTID {spec.gtid}" if spec.gtid else "")
    return f"the first member restores {what} of database {spec.database}{upto}"


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def observe(pod: Mapping[str, Any] | None) -> tuple[Phase, str]:
    """(phase, message) of the restore from the first member's pod as read from the API: its
    init container running (Restoring), ended with 0 (Completed: its termination message says
    what was restored), ended otherwise, now or before its current retry (Failed: the message's
    last line says why), or unable to start (CONFIG_ERRORS, e.g. a Secret key missing: Failed)."""
    if pod is None:
        return "Restoring", "waiting for the first member's pod"
    statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
    init = next((s for s in statuses if s.get("name") == INIT_CONTAINER), None)
    if init is None:
        return "Restoring", "waiting for the first member's pod to start"
    state, last = init.get("state") or {}, init.get("lastState") or {}
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in CONFIG_ERRORS:
        return "Failed", f"the restoring container cannot start: {waiting.get('reason')}: {waiting.get('message', '')}"
    ended = state.get("terminated") or {}
    if ended and ended.get("exitCode") == 0:
        return "Completed", _last_line(ended.get("message")) or "restored"
    failed = ended if ended else last.get("terminated") or {}
    if failed and failed.get("exitCode") != 0:
        why = _last_line(failed.get("message")) or f"the init container exited with {failed.get('exitCode')}"
        return "Failed", why if why.startswith("restore failed") else f"restore failed: {why}"
    member = (pod.get("metadata") or {}).get("name") or "the first member"
    return "Restoring", f"under way: kubectl logs {member} -c {INIT_CONTAINER}"


def progress(before: RestoreStatus | None, spec: RestoreSpec, observed: tuple[Phase, str]) -> tuple[
        RestoreStatus, list[tuple[DatabaseEvent, str]]]:
    """status.restore after one look at the first member (observe), and the Events the change
    calls for: RestoreStarted once, RestoreFailed for each new failure, RestoreCompleted once.
    Completed is final: a later restart of the member changes nothing."""
    if before is not None and before.phase == "Completed":
        return before, []
    phase, message = observed
    found = _ID.search(message)
    chosen = spec.backup or (found.group(1) if found else None) or (before.backup if before else None)
    if phase == "Restoring":
        message = describe(spec) + f" ({message})"
    status = RestoreStatus(phase=phase, backup=chosen, point_in_time=spec.point_in_time, gtid=spec.gtid,
                           message=message)
    events: list[tuple[DatabaseEvent, str]] = []
    if before is None:
        events.append((DatabaseEvent.RESTORE_STARTED, describe(spec)))
    if phase == "Failed" and (before is None or before.phase != "Failed" or before.message != message):
        events.append((DatabaseEvent.RESTORE_FAILED, f"{message}; nothing was deleted, the restore is retried"))
    if phase == "Completed":
        events.append((DatabaseEvent.RESTORE_COMPLETED, message))
    return status, events


def verdict(status: RestoreStatus) -> Verdict | None:
    """Ready while the restore is not complete: False, reason Restoring or RestoreFailed with its
    message; None once complete (the clustering loop's Ready holds)."""
    if status.phase == "Restoring":
        return Verdict(False, DatabaseReason.RESTORING, status.message or "restoring")
    if status.phase == "Failed":
        return Verdict(False, DatabaseReason.RESTORE_FAILED, status.message or "the restore failed")
    return None

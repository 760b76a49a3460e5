"""The Kubernetes objects that run a ReplicatedDatabase (pure builders).

Members are the pods of one StatefulSet. An init container (the database image itself,
so nothing else needs pulling) gives each member its server id from its ordinal, writes
the operator's users into an init file that runs at every start with binary logging off
(so the users exist on every member without becoming replicated transactions), and creates
the datadir on first start (per flavor: mariadb-install-db, or mysqld --initialize-insecure).
The operator moves the role label that the `-primary` and `-replicas` Services select on.

Both containers run as the images' mysql user (uid/gid 999), never root, with no capability
and a read-only root filesystem: every path the server writes is a volume (the claim with the
datadir, the socket/pid directory, tmpdir, secure_file_priv, the generated configuration).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hakeeper.api.meta import (
    CONFIG_HASH_ANNOTATION,
    DATABASE_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    ROLE_LABEL,
)
from hakeeper.api.replicateddatabase import DEFAULT_IMAGE, ReplicatedDatabaseSpec
from hakeeper.replicateddatabase.clustering.flavor import flavor_for
from hakeeper.replicateddatabase.clustering.policy import Policy

SERVER_ID_BASE = 100
VOLUME_DIR = "/var/lib/mysql"
"""Where each member's PersistentVolumeClaim is mounted."""
DATA_DIR = f"{VOLUME_DIR}/data"
"""Both flavors' datadir: a directory inside the volume, so that a re-seed can put a copy in its
place with two renames (and mysqld --initialize refuses a volume root holding lost+found)."""
RESEED_DIR = "/etc/hakeeper/reseed"
"""Where the init container finds the `<db>-reseed` ConfigMap: a file per member being rebuilt
(replicateddatabase.reseed.Entry)."""
CONF_DIR = "/etc/mysql/hakeeper"
BASE_CONF_DIR = "/etc/mysql/hakeeper-base"
RUN_DIR = "/run/mysqld"
TMP_DIR = "/tmp"
FILES_DIR = "/var/lib/mysql-files"
"""secure_file_priv: server-side LOAD DATA INFILE / SELECT ... INTO OUTFILE only here."""
OPERATOR_USER = "hakeeper"
REPLICATION_USER = "hakeeper-repl"
PASSWORD_KEYS = ("root-password", "replication-password", "operator-password")
APPLICATION_USER = "app"
"""The application's account: every data and schema privilege on every schema, no administrative
one (no SUPER, READ ONLY ADMIN, CONNECTION ADMIN, GRANT OPTION...), so read_only stops it on a
fenced member (MariaDB's read_only does not stop root or the operator's account)."""
APPLICATION_PASSWORD_KEY = "application-password"
"""Its password's key in the credentials Secret (generated; optional in a Secret of your own)."""
APPLICATION_PRIVILEGES = ("SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, "
                          "CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, "
                          "ALTER ROUTINE, TRIGGER")
SERVER_UID = 999
"""The mysql user and group of images/mariadb and images/mysql (Docker's official images use
999 too). fsGroup makes the claim writable for it; a hostPath volume must be already."""


@dataclass(frozen=True)
class ServerLayout:
    """What differs between the flavors' images: the server binary, where the data lives, how
    the init container initialises an empty datadir (a sh snippet), flavor-only settings."""

    container: str
    server: str
    datadir: str
    initialise: str
    settings: tuple[str, ...] = ()
    plugin_settings: tuple[str, ...] = ()
    """Prefixes of settings that exist only once plugin-load-add has loaded their plugin:
    written `loose-`, since mysqld --initialize loads no plugin and refuses unknown settings."""
    client: str = "mysql"
    """The command-line client (the preStop hook asks the server whether it replicates)."""
    replica_status: str = "SHOW REPLICA STATUS"


# Earlier versions kept MariaDB's datadir at the volume's root: moved into data/ once (a run cut
# short is completed by the next: .moving is the datadir being filled).
_MARIADB_MOVE = f"""if [ ! -d {DATA_DIR} ] && {{ [ -d {VOLUME_DIR}/mysql ] || [ -d {VOLUME_DIR}/.moving ]; }}; then
  mkdir -p {VOLUME_DIR}/.moving
  for entry in {VOLUME_DIR}/* {VOLUME_DIR}/.[!.]*; do
    case "${{entry##*/}}" in .moving|lost+found|errant-*|.reseed-*|.discard-*|'*'|'.[!.]*') continue ;; esac
    mv "$entry" {VOLUME_DIR}/.moving/
  done
  mv {VOLUME_DIR}/.moving {DATA_DIR}
fi
"""
# A run of mariadb-install-db cut short (the pod deleted meanwhile) left a mysql/ directory the
# old check took for a complete datadir: the server then started without the accounts init.sql
# creates (clients got error 1130; field fault h). So, as for MySQL: a scratch directory,
# renamed once complete, and a run cut short starts over.
# --no-defaults: the image's /etc/mysql configuration plays no part (the server never reads it).
# --force: it refuses to run when the host name does not resolve (no /etc/hosts entry for it in
# an image run without Kubernetes' hosts file); --skip-name-resolve makes no account by host name
# anyway. Its messages (errors included) go to stdout: kept, for `kubectl logs -c init`.
_MARIADB_INITIALISE = _MARIADB_MOVE + f"""if [ ! -d {DATA_DIR} ]; then
  rm -rf {VOLUME_DIR}/.initialising
  mariadb-install-db --no-defaults --datadir={VOLUME_DIR}/.initialising --skip-test-db --skip-name-resolve --force --auth-root-authentication-method=socket
  mv {VOLUME_DIR}/.initialising {DATA_DIR}
fi
"""

# mysqld --initialize refuses a non-empty directory (a volume's root may hold lost+found) and
# cannot resume: it initialises a scratch directory on the volume that is renamed once complete,
# so a member killed half-way starts over. It reads the server's my.cnf, so that what is fixed at
# initialisation (lower_case_table_names, innodb_page_size, ...) matches, but not init-file
# (init.sql belongs to the server's starts). --initialize-insecure: root@localhost without a
# password until init.sql gives it the root password at the first start.
_MYSQL_INITIALISE = f"""if [ ! -d {DATA_DIR} ]; then
  rm -rf {VOLUME_DIR}/.initialising
  if ! mysqld --defaults-file={BASE_CONF_DIR}/my.cnf --initialize-insecure --datadir={VOLUME_DIR}/.initialising --init-file=/dev/null --log-error={TMP_DIR}/initialise.log; then
    cat {TMP_DIR}/initialise.log >&2
    exit 1
  fi
  mv {VOLUME_DIR}/.initialising {DATA_DIR}
fi
"""

# A re-seed (replicateddatabase.reseed): before the server starts, the copy of a donor's data
# in .reseed-<id> takes the datadir's place; the old datadir becomes errant-<id> (kept for a
# person) or is removed. Leftovers of an attempt cut short or superseded are removed first. Each
# step is a rename, and a start cut short anywhere is completed by the next one. The entry's
# values are [A-Za-z0-9._:-] (reseed.Entry.render), safe in a path.
_RESEED = f"""reseed_entry={RESEED_DIR}/$HOSTNAME
field() {{ [ -f "$reseed_entry" ] && sed -n "s/^$1=//p" "$reseed_entry" || true; }}
reseed_id=$(field id)
reseed_phase=$(field phase)
for leftover in {VOLUME_DIR}/.reseed-* {VOLUME_DIR}/.discard-*; do
  [ -e "$leftover" ] || continue
  [ "$reseed_phase" = restart ] && [ "$leftover" = "{VOLUME_DIR}/.reseed-$reseed_id" ] && continue
  echo "removing $leftover, left by a re-seed that did not complete"
  rm -rf "$leftover"
done
if [ "$reseed_phase" = restart ]; then
__FETCH__
  if [ -d "{VOLUME_DIR}/.reseed-$reseed_id" ]; then
    if [ -d {DATA_DIR} ]; then
      if [ "$(field keep)" = errant ]; then
        mv {DATA_DIR} "{VOLUME_DIR}/errant-$reseed_id"
        echo "the errant data is kept in {VOLUME_DIR}/errant-$reseed_id"
      else
        mv {DATA_DIR} "{VOLUME_DIR}/.discard-$reseed_id"
      fi
    fi
    mv "{VOLUME_DIR}/.reseed-$reseed_id" {DATA_DIR}
    echo "$reseed_id" > {DATA_DIR}/.reseed-id
    rm -rf "{VOLUME_DIR}/.discard-$reseed_id"
    echo "re-seeded from $(field donor)'s data (copy $reseed_id)"
  fi
fi
"""

BACKUP_PORT = 3307
"""The MariaDB backup container's port: a copy of the member's data for a member re-seeded."""
STREAM_COMPLETE = "hakeeper-stream-complete"
"""The file the backup container appends to its stream once mariabackup succeeded: a copy
without it was cut short (mbstream exits 0 on a stream that simply ends). Its one line,
`hakeeper-stream-complete member=<pod> gtid=<GTID position of the copy> end`, is what a backup
job reads at the stream's end for its manifest (replicateddatabase.backup)."""

# MariaDB's copy, fetched by the init container of the member re-seeded from the donor's backup
# container (the server is not running): the stream is extracted into .reseed-<id>.partial,
# checked complete, prepared, given the donor's replication position, and only then renamed
# .reseed-<id>, which the swap below puts in the datadir's place. The token is the replication
# password (whoever has it can read every transaction already). socat's `ignoreeof`: the token is
# the whole request, and the connection stays open for the reply (socat's default would close it
# 0.5 s after the request). The position: the donor's binlog position at the copy's point
# (xtrabackup_binlog_info; every member logs what it replicates, a primary donor only there), or
# its replica position when it has none (xtrabackup_slave_info), stored in mysql.gtid_slave_pos by
# a bootstrap run with no binary log, so the member starts with no transaction of its own and
# replicates with MASTER_USE_GTID=slave_pos from there (MariaDB's "Setting up a Replica with
# mariadb-backup").
_MARIADB_FETCH = rf"""  if [ ! -d "{VOLUME_DIR}/.reseed-$reseed_id" ] && [ "$(cat {DATA_DIR}/.reseed-id 2>/dev/null)" != "$reseed_id" ]; then
    partial="{VOLUME_DIR}/.reseed-$reseed_id.partial"
    rm -rf "$partial"
    mkdir "$partial"
    echo "copying $(field donor)'s data from $(field host):{BACKUP_PORT}"
    printf '%s\n' "$REPLICATION_PASSWORD" | socat -,ignoreeof "TCP:$(field host):{BACKUP_PORT},connect-timeout=10" \
      | mbstream -x -C "$partial"
    if [ ! -f "$partial/{STREAM_COMPLETE}" ]; then
      echo "the copy from $(field donor) is incomplete: see its backup container's log" >&2
      exit 1
    fi
    if ! mariabackup --prepare --target-dir="$partial" > {TMP_DIR}/prepare.log 2>&1 \
        || ! grep -q '^backup_type = log-applied$' "$partial/xtrabackup_checkpoints"; then
      cat {TMP_DIR}/prepare.log >&2
      exit 1
    fi
    gtid=$(cut -f3 "$partial/xtrabackup_binlog_info")
    if [ -z "$gtid" ] && [ -f "$partial/xtrabackup_slave_info" ]; then
      gtid=$(sed -n "s/^SET GLOBAL gtid_slave_pos = '\([0-9,-]*\)';$/\1/p" "$partial/xtrabackup_slave_info")
    fi
    echo "$gtid" | grep -Eq '^([0-9]+-[0-9]+-[0-9]+(,|$))*$'
    {{ echo "DELETE FROM mysql.gtid_slave_pos;"
      echo "$gtid" | tr ',' '\n' | awk -F- 'NF == 3 {{ printf "INSERT INTO mysql.gtid_slave_pos (domain_id, sub_id, server_id, seq_no) VALUES (%s, %d, %s, %s);\n", $1, NR, $2, $3 }}'
    }} | mariadbd --no-defaults --datadir="$partial" --bootstrap --skip-networking --skip-log-bin \
      --innodb-buffer-pool-size=32M --log-error={TMP_DIR}/position.log || {{ cat {TMP_DIR}/position.log >&2; exit 1; }}
    # the copy carries its id: once it is the datadir, a start cut short before the swap's own
    # note of the id does not fetch it again
    echo "$reseed_id" > "$partial/.reseed-id"
    mv "$partial" "{VOLUME_DIR}/.reseed-$reseed_id"
    echo "copied; it replicates from GTID position '$gtid'"
  fi
"""

LAYOUTS: dict[str, ServerLayout] = {
    "mariadb": ServerLayout("mariadb", "mariadbd", DATA_DIR, _MARIADB_INITIALISE, client="mariadb",
                            replica_status="SHOW SLAVE STATUS"),
    # The X Protocol plugin is off: nothing uses it, and it would listen on a second port.
    "mysql": ServerLayout("mysql", "mysqld", DATA_DIR, _MYSQL_INITIALISE, ("loose-mysqlx=OFF",),
                          plugin_settings=("rpl_semi_sync_",)),
}


def layout(flavor: str) -> ServerLayout:
    return LAYOUTS[flavor]


PRE_STOP_SECONDS = 20
"""How long a primary's pod waits, when deleted, for the operator to switch over from it."""


def pre_stop_script(flavor: str) -> str:
    """The server container's preStop hook: a deleted pod's server keeps running until it
    replicates from another member (the operator's switchover away from a terminating primary
    ends by pointing it at the new one), at most PRE_STOP_SECONDS. A replica replicates already
    and stops at once; a server that does not answer is not waited for. The kubelet sends
    SIGTERM only after the hook (Kubernetes' container lifecycle hooks)."""
    server = layout(flavor)
    ask = (f"MYSQL_PWD=\"$OPERATOR_PASSWORD\" {server.client} --protocol=socket -S {RUN_DIR}/mysqld.sock "
           f"-u {OPERATOR_USER} -Nse '{server.replica_status}'")
    return (f"end=$(( $(date +%s) + {PRE_STOP_SECONDS} ))\n"
            f"while [ \"$(date +%s)\" -lt \"$end\" ]; do\n"
            f"  out=$({ask} 2>/dev/null) || exit 0\n"
            f"  [ -n \"$out\" ] && exit 0\n"
            f"  sleep 0.5\n"
            f"done\n")


def names(db: str) -> dict[str, str]:
    return {"statefulset": db, "headless": db, "primary": f"{db}-primary", "replicas": f"{db}-replicas",
            "config": f"{db}-config", "credentials": f"{db}-credentials", "pdb": db, "reseed": f"{db}-reseed"}


def labels(db: str) -> dict[str, str]:
    return {NAME_LABEL: "mariadb", INSTANCE_LABEL: db,
            MANAGED_BY_LABEL: MANAGED_BY, DATABASE_LABEL: db}


def selector(db: str) -> dict[str, str]:
    return {DATABASE_LABEL: db, INSTANCE_LABEL: db}


def credentials_secret(db: str, namespace: str) -> dict[str, Any]:
    """Generated once; the operator creates it only when absent and never rewrites a password
    (reconcile adds the application's to a Secret generated before it existed)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": names(db)["credentials"], "namespace": namespace, "labels": labels(db)},
            "stringData": {**{key: secrets.token_urlsafe(24) for key in PASSWORD_KEYS}, **application_credentials()}}


def application_credentials() -> dict[str, str]:
    """The application account's keys of the credentials Secret, its password generated."""
    return {APPLICATION_PASSWORD_KEY: secrets.token_urlsafe(24), "application-user": APPLICATION_USER}


def my_cnf(spec: ReplicatedDatabaseSpec) -> str:
    """The settings the clustering loop relies on come from its flavor adapter (one source);
    the server id is per member, written by the init container."""
    owned = flavor_for(spec.flavor).settings_for(Policy.from_spec(spec), server_id=0)
    owned.pop("server_id")
    server = layout(spec.flavor)
    lines = ["[mysqld]", f"datadir={server.datadir}", f"socket={RUN_DIR}/mysqld.sock",
             f"pid-file={RUN_DIR}/mysqld.pid", f"tmpdir={TMP_DIR}", f"secure-file-priv={FILES_DIR}",
             "port=3306", f"init-file={CONF_DIR}/init.sql", *server.settings]
    lines += [f"{'loose-' if key.startswith(server.plugin_settings) else ''}{key.replace('_', '-')}={value}"
              for key, value in owned.items()]
    lines += [f"{key}={value}" for key, value in sorted(spec.config.items())]
    lines += [f"!includedir {CONF_DIR}", ""]
    return "\n".join(lines)


def config_map(db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": names(db)["config"], "namespace": namespace, "labels": labels(db)},
            "data": {"my.cnf": my_cnf(spec)}}


def config_hash(spec: ReplicatedDatabaseSpec) -> str:
    """The my.cnf's SHA-256, 16 hex digits: the pod template's CONFIG_HASH_ANNOTATION."""
    return hashlib.sha256(my_cnf(spec).encode()).hexdigest()[:16]


def init_sql(flavor: str) -> str:
    """The operator's accounts (a heredoc: $..._password are the escaped Secret values), run by
    the server at every start with binary logging off, so a rotated Secret applies at the next
    restart. MySQL: caching_sha2_password (9.x has no mysql_native_password), and
    root@localhost, which --initialize-insecure left without a password, gets the root password;
    super_read_only is lifted around the statements and put back. MariaDB: root@localhost stays
    socket-authenticated as the OS user root, which never runs in the pod."""
    using = " WITH caching_sha2_password" if flavor == "mysql" else ""
    # The passwords are escaped with backslashes: a user's sql_mode (spec.config) with
    # NO_BACKSLASH_ESCAPES must not change how this file reads them.
    lines = ["SET SESSION sql_mode='';", "SET sql_log_bin=0;"]
    if flavor == "mysql":
        lines += ["SET @hakeeper_super_read_only=@@GLOBAL.super_read_only;", "SET GLOBAL super_read_only=OFF;"]
    for user, password, privileges in (
        (OPERATOR_USER, "$operator_password", "ALL PRIVILEGES"),
        (REPLICATION_USER, "$replication_password", "REPLICATION SLAVE, REPLICATION CLIENT"),
        ("root", "$root_password", "ALL PRIVILEGES"),
    ):
        grant_option = " WITH GRANT OPTION" if privileges == "ALL PRIVILEGES" else ""
        lines += [f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED{using} BY '{password}';",
                  f"ALTER USER '{user}'@'%' IDENTIFIED{using} BY '{password}';",
                  f"GRANT {privileges} ON *.* TO '{user}'@'%'{grant_option};"]
    if flavor == "mysql":
        lines += [f"ALTER USER 'root'@'localhost' IDENTIFIED{using} BY '$root_password';",
                  "SET GLOBAL super_read_only=@hakeeper_super_read_only;"]
    lines.append("SET sql_log_bin=1;")
    return "\n".join(lines)


def application_sql(flavor: str) -> str:
    """The application's account (APPLICATION_USER), like the operator's: at every start, binary
    logging off, its password from the Secret ($application_password, escaped)."""
    using = " WITH caching_sha2_password" if flavor == "mysql" else ""
    lines = ["SET SESSION sql_mode='';", "SET sql_log_bin=0;"]
    if flavor == "mysql":
        lines += ["SET @hakeeper_super_read_only=@@GLOBAL.super_read_only;", "SET GLOBAL super_read_only=OFF;"]
    lines += [f"CREATE USER IF NOT EXISTS '{APPLICATION_USER}'@'%' IDENTIFIED{using} BY '$application_password';",
              f"ALTER USER '{APPLICATION_USER}'@'%' IDENTIFIED{using} BY '$application_password';",
              f"GRANT {APPLICATION_PRIVILEGES} ON *.* TO '{APPLICATION_USER}'@'%';"]
    if flavor == "mysql":
        lines.append("SET GLOBAL super_read_only=@hakeeper_super_read_only;")
    lines.append("SET sql_log_bin=1;")
    return "\n".join(lines)


# A password as the body of an SQL string literal: \ and ' escaped. (A newline cannot be in one:
# the server reads the init file a line at a time.)
SQL_STRING_FUNCTION = r"""sql_string() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }"""


def init_script(flavor: str, restore: str = "") -> str:
    """sh, not bash (Debian's images have dash); ${HOSTNAME##*-} is the StatefulSet ordinal.

    restore: sh that fills an absent datadir from a backup (backup.restore_script), run once
    the configuration and the accounts' init file are written and before an empty datadir would
    be initialised."""
    return f"""set -eu
ordinal=${{HOSTNAME##*-}}
cat > {CONF_DIR}/server.cnf <<EOF
[mysqld]
server-id=$(( {SERVER_ID_BASE} + ordinal ))
report-host=$POD_IP
EOF
{SQL_STRING_FUNCTION}
operator_password=$(sql_string "$OPERATOR_PASSWORD")
replication_password=$(sql_string "$REPLICATION_PASSWORD")
root_password=$(sql_string "$ROOT_PASSWORD")
umask 077
cat > {CONF_DIR}/init.sql <<EOF
{init_sql(flavor)}
EOF
if [ -n "${{APPLICATION_PASSWORD:-}}" ]; then
application_password=$(sql_string "$APPLICATION_PASSWORD")
cat >> {CONF_DIR}/init.sql <<EOF
{application_sql(flavor)}
EOF
fi
umask 022
{restore}{reseed_script(flavor)}{layout(flavor).initialise}"""


def reseed_script(flavor: str) -> str:
    """The init container's part of a re-seed (_RESEED): MySQL's copy is there already (the
    member's server cloned it before the restart); MariaDB's is fetched first (_MARIADB_FETCH)."""
    return _RESEED.replace("__FETCH__\n", _MARIADB_FETCH if flavor == "mariadb" else "")


def backup_script() -> str:
    """The MariaDB backup container: serves a stream of the member's data (mariabackup
    --backup --stream=xbstream, the operator's account, over the server's socket) to a client
    that sends the replication password as its first line, then STREAM_COMPLETE; anything else
    is refused. One request at a time per connection (socat forks per connection); mariabackup
    writes nothing on this side. Its messages go to this container's log."""
    serve = rf"""IFS= read -r token || exit 0
if [ "$token" != "$REPLICATION_PASSWORD" ]; then
  echo "refused a copy request: wrong token" >&2
  exit 0
fi
echo "streaming a copy of the data" >&2
work=$(mktemp -d {TMP_DIR}/backup.XXXXXX)
if mariabackup --defaults-file={BASE_CONF_DIR}/my.cnf --backup --stream=xbstream --target-dir="$work" \
    --extra-lsndir="$work/meta" --user={OPERATOR_USER} --password="$OPERATOR_PASSWORD" \
    --socket={RUN_DIR}/mysqld.sock --slave-info; then
  gtid=$(sed -n "s/^binlog_pos = .*GTID of the last change '\([0-9,-]*\)'.*/\1/p" "$work/meta/xtrabackup_info")
  echo "{STREAM_COMPLETE} member=$HOSTNAME gtid=$gtid end" > "$work/{STREAM_COMPLETE}"
  (cd "$work" && mbstream -c {STREAM_COMPLETE})
  echo "copy complete" >&2
else
  echo "mariabackup failed: the copy is incomplete" >&2
fi
rm -rf "$work"
"""
    return (f"cat > {TMP_DIR}/serve-copy.sh <<'SERVE'\n{serve}SERVE\n"
            f"exec socat -t 86400 TCP-LISTEN:{BACKUP_PORT},bind=$POD_IP,reuseaddr,fork "
            f"SYSTEM:'sh {TMP_DIR}/serve-copy.sh'\n")


def _secret_env(secret: str) -> list[dict[str, Any]]:
    required = [{"name": key.upper().replace("-", "_"), "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                for key in PASSWORD_KEYS]
    return [*required, {"name": "APPLICATION_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": secret, "key": APPLICATION_PASSWORD_KEY, "optional": True}}}]


POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": SERVER_UID, "runAsGroup": SERVER_UID, "fsGroup": SERVER_UID,
    "fsGroupChangePolicy": "OnRootMismatch",  # no recursive chown of a large datadir at every start
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
SCRATCH_VOLUMES = {"conf": CONF_DIR, "run": RUN_DIR, "tmp": TMP_DIR, "files": FILES_DIR}
"""emptyDir volumes by name -> mount path: everything the server writes outside its datadir."""


@dataclass(frozen=True)
class PodExtras:
    """What the members' pod template adds for a restore (replicateddatabase.restore): sh for
    init_script's `restore`, and the init container's extra environment variables, volumes and
    mounts (the store's)."""

    init: str
    env: tuple[dict[str, Any], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    mounts: tuple[dict[str, Any], ...] = ()


def statefulset(db: str, namespace: str, spec: ReplicatedDatabaseSpec, secret: str | None = None,
                restore: PodExtras | None = None) -> dict[str, Any]:
    """The members' StatefulSet; `restore`: the first member restores a backup in its init
    container (only without a datadir), whose termination message then falls back to its log's
    tail, so that the status can say why a restore failed."""
    n = names(db)
    server_layout = layout(spec.flavor)
    image = spec.image or DEFAULT_IMAGE[spec.flavor]
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    mounts = [{"name": "data", "mountPath": VOLUME_DIR}, {"name": "base-conf", "mountPath": BASE_CONF_DIR},
              *({"name": name, "mountPath": path} for name, path in SCRATCH_VOLUMES.items())]
    reseed_mount = {"name": "reseed", "mountPath": RESEED_DIR, "readOnly": True}
    resources = spec.resources.wire()
    server = {
        "name": server_layout.container, "image": image,
        "command": [server_layout.server],
        # --defaults-file must come first; binding the pod's own address keeps members apart
        "args": [f"--defaults-file={BASE_CONF_DIR}/my.cnf", "--bind-address=$(POD_IP)"],
        "env": [pod_ip, *[e for e in _secret_env(secret or n["credentials"]) if e["name"] == "OPERATOR_PASSWORD"]],
        "ports": [{"name": "mysql", "containerPort": 3306}],
        # a deleted primary is switched over from before its server stops: a planned restart
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", pre_stop_script(spec.flavor)]}}},
        "readinessProbe": {"tcpSocket": {"port": "mysql"}, "periodSeconds": 2, "failureThreshold": 2},
        "volumeMounts": mounts,
        "securityContext": dict(CONTAINER_SECURITY),
    }
    init: dict[str, Any] = {"name": "init", "image": image,
            "command": ["sh", "-c", init_script(spec.flavor, restore.init if restore else "")],
            "env": [pod_ip, *_secret_env(secret or n["credentials"])], "volumeMounts": [*mounts, reseed_mount],
            "securityContext": dict(CONTAINER_SECURITY)}
    if restore is not None:
        init["env"] += list(restore.env)
        init["volumeMounts"] += list(restore.mounts)
        init["terminationMessagePolicy"] = "FallbackToLogsOnError"
    if resources:
        server["resources"] = resources
        init["resources"] = resources  # mysqld --initialize starts the storage engine
    containers = [server]
    if spec.flavor == "mariadb":
        # a copy of this member's data for a member re-seeded from it (MariaDB has no clone plugin)
        containers.append({
            "name": "backup", "image": image, "command": ["sh", "-c", backup_script()],
            "env": [pod_ip, *[e for e in _secret_env(secret or n["credentials"])
                              if e["name"] in ("OPERATOR_PASSWORD", "REPLICATION_PASSWORD")]],
            "ports": [{"name": "backup", "containerPort": BACKUP_PORT}],
            # conf: my.cnf's !includedir, which mariabackup reads (it aborts on a missing directory)
            "volumeMounts": [{**m, "readOnly": True} if m["name"] == "conf" else m
                             for m in mounts if m["name"] in ("data", "base-conf", "conf", "run", "tmp")],
            "securityContext": dict(CONTAINER_SECURITY),
        })
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": n["statefulset"], "namespace": namespace, "labels": labels(db)},
        "spec": {
            "serviceName": n["headless"], "replicas": spec.replicas, "podManagementPolicy": "Parallel",
            # the operator restarts the members in its own order (replicas, a switchover, the
            # old primary: hakeeper.replicateddatabase.rollout), never the StatefulSet controller
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": selector(db)},
            "template": {
                # a new my.cnf is a new pod template: the rollout restarts the members with it
                "metadata": {"labels": labels(db), "annotations": {CONFIG_HASH_ANNOTATION: config_hash(spec)}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": dict(POD_SECURITY),
                    "initContainers": [init], "containers": containers,
                    "volumes": [*({"name": name, "emptyDir": {}} for name in SCRATCH_VOLUMES),
                                {"name": "base-conf", "configMap": {"name": n["config"]}},
                                # written only while a member is re-seeded (reseed.py)
                                {"name": "reseed", "configMap": {"name": n["reseed"], "optional": True}},
                                *(restore.volumes if restore else ())],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                           "labelSelector": {"matchLabels": selector(db)}}}]}},
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": labels(db)},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage.size}},
                         **({"storageClassName": spec.storage.storage_class_name}
                            if spec.storage.storage_class_name else {})},
            }],
        },
    }


def services(db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> list[dict[str, Any]]:
    n = names(db)
    port = [{"name": "mysql", "port": spec.service.port, "targetPort": "mysql"}]

    def service(name: str, role: str | None, **extra: Any) -> dict[str, Any]:
        select = {**selector(db), **({ROLE_LABEL: role} if role else {})}
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace, "labels": labels(db)},
                "spec": {"selector": select, "ports": port, **extra}}

    return [
        # members find each other by stable names, ready or not
        service(n["headless"], None, clusterIP="None", publishNotReadyAddresses=True),
        service(n["primary"], "primary", type=spec.service.type),
        service(n["replicas"], "replica", type=spec.service.type),
    ]


def reseed_config_map(db: str, namespace: str, entries: Mapping[str, str]) -> dict[str, Any]:
    """The `<db>-reseed` ConfigMap: member name -> reseed.Entry.render()."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": names(db)["reseed"], "namespace": namespace, "labels": labels(db)},
            "data": dict(entries)}


def pod_disruption_budget(db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> dict[str, Any] | None:
    if spec.replicas < 2:
        return None
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": names(db)["pdb"], "namespace": namespace, "labels": labels(db)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(db)}}}

"""The Kubernetes objects that run a ReplicatedDatabase (pure builders).

Members are the pods of one StatefulSet. An init container (the database image itself,
so nothing else needs pulling) gives each member its server id from its ordinal, writes
the operator's users into an init file that runs at every start with binary logging off
(so the users exist on every member without becoming replicated transactions), and creates
the datadir on first start. The operator moves the role label that the `-primary` and
`-replicas` Services select on.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..api.replicateddatabase import DEFAULT_IMAGE, ReplicatedDatabaseSpec
from ..mysql.flavor import flavor_for
from ..mysql.policy import Policy

ROLE_LABEL = "hakeeper.io/role"
DATABASE_LABEL = "hakeeper.io/database"
SERVER_ID_BASE = 100
DATA_DIR = "/var/lib/mysql"
CONF_DIR = "/etc/mysql/hakeeper"
BASE_CONF_DIR = "/etc/mysql/hakeeper-base"
RUN_DIR = "/run/mysqld"
OPERATOR_USER = "hakeeper"
REPLICATION_USER = "hakeeper-repl"
PASSWORD_KEYS = ("root-password", "replication-password", "operator-password")


def names(db: str) -> dict[str, str]:
    return {"statefulset": db, "headless": db, "primary": f"{db}-primary", "replicas": f"{db}-replicas",
            "config": f"{db}-config", "credentials": f"{db}-credentials", "pdb": db}


def labels(db: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mariadb", "app.kubernetes.io/instance": db,
            "app.kubernetes.io/managed-by": "hakeeper", DATABASE_LABEL: db}


def selector(db: str) -> dict[str, str]:
    return {DATABASE_LABEL: db, "app.kubernetes.io/instance": db}


def credentials_secret(db: str, namespace: str) -> dict[str, Any]:
    """Generated once; the operator creates it only when absent and never rewrites it."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": names(db)["credentials"], "namespace": namespace, "labels": labels(db)},
            "stringData": {key: secrets.token_urlsafe(24) for key in PASSWORD_KEYS}}


def my_cnf(spec: ReplicatedDatabaseSpec) -> str:
    """The settings the clustering loop relies on come from its flavor adapter (one source);
    the server id is per member, written by the init container."""
    owned = flavor_for(spec.flavor).settings_for(Policy.from_spec(spec), server_id=0)
    owned.pop("server_id")
    lines = ["[mysqld]", f"datadir={DATA_DIR}", f"socket={RUN_DIR}/mysqld.sock", f"pid-file={RUN_DIR}/mysqld.pid",
             "port=3306", "relay-log-recovery=ON", f"init-file={CONF_DIR}/init.sql"]
    lines += [f"{key.replace('_', '-')}={value}" for key, value in owned.items()]
    lines += [f"{key}={value}" for key, value in sorted(spec.config.items())]
    lines += [f"!includedir {CONF_DIR}", ""]
    return "\n".join(lines)


def config_map(db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": names(db)["config"], "namespace": namespace, "labels": labels(db)},
            "data": {"my.cnf": my_cnf(spec)}}


# sh, not bash: the official images have sh; ${HOSTNAME##*-} is the StatefulSet ordinal
INIT_SCRIPT = f"""set -eu
ordinal=${{HOSTNAME##*-}}
cat > {CONF_DIR}/server.cnf <<EOF
[mysqld]
server-id=$(( {SERVER_ID_BASE} + ordinal ))
report-host=$POD_IP
EOF
umask 077
cat > {CONF_DIR}/init.sql <<EOF
SET sql_log_bin=0;
CREATE USER IF NOT EXISTS '{OPERATOR_USER}'@'%' IDENTIFIED BY '$OPERATOR_PASSWORD';
ALTER USER '{OPERATOR_USER}'@'%' IDENTIFIED BY '$OPERATOR_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '{OPERATOR_USER}'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '{REPLICATION_USER}'@'%' IDENTIFIED BY '$REPLICATION_PASSWORD';
ALTER USER '{REPLICATION_USER}'@'%' IDENTIFIED BY '$REPLICATION_PASSWORD';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPLICATION_USER}'@'%';
CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$ROOT_PASSWORD';
ALTER USER 'root'@'%' IDENTIFIED BY '$ROOT_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
SET sql_log_bin=1;
EOF
if [ ! -d {DATA_DIR}/mysql ]; then
  mariadb-install-db --datadir={DATA_DIR} --skip-test-db --auth-root-authentication-method=socket >/dev/null
fi
"""


def _secret_env(secret: str) -> list[dict[str, Any]]:
    return [{"name": key.upper().replace("-", "_"), "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in PASSWORD_KEYS]


def statefulset(db: str, namespace: str, spec: ReplicatedDatabaseSpec, secret: str | None = None) -> dict[str, Any]:
    n = names(db)
    image = spec.image or DEFAULT_IMAGE[spec.flavor]
    pod_ip = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    mounts = [{"name": "data", "mountPath": DATA_DIR}, {"name": "conf", "mountPath": CONF_DIR},
              {"name": "base-conf", "mountPath": BASE_CONF_DIR}, {"name": "run", "mountPath": RUN_DIR}]
    resources = spec.resources.wire()
    server = {
        "name": "mariadb", "image": image,
        "command": ["mariadbd"],
        # --defaults-file must come first; binding the pod's own address keeps members apart
        "args": [f"--defaults-file={BASE_CONF_DIR}/my.cnf", "--bind-address=$(POD_IP)"],
        "env": [pod_ip],
        "ports": [{"name": "mysql", "containerPort": 3306}],
        "readinessProbe": {"tcpSocket": {"port": "mysql"}, "periodSeconds": 2, "failureThreshold": 2},
        "volumeMounts": mounts,
    }
    if resources:
        server["resources"] = resources
    init = {"name": "init", "image": image, "command": ["sh", "-c", INIT_SCRIPT],
            "env": [pod_ip, *_secret_env(secret or n["credentials"])], "volumeMounts": mounts}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": n["statefulset"], "namespace": namespace, "labels": labels(db)},
        "spec": {
            "serviceName": n["headless"], "replicas": spec.replicas, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector(db)},
            "template": {
                "metadata": {"labels": labels(db)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": [init], "containers": [server],
                    "volumes": [{"name": "conf", "emptyDir": {}}, {"name": "run", "emptyDir": {}},
                                {"name": "base-conf", "configMap": {"name": n["config"]}}],
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


def pod_disruption_budget(db: str, namespace: str, spec: ReplicatedDatabaseSpec) -> dict[str, Any] | None:
    if spec.replicas < 2:
        return None
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": names(db)["pdb"], "namespace": namespace, "labels": labels(db)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(db)}}}

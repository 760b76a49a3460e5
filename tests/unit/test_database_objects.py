"""The StatefulSet of a ReplicatedDatabase, per flavor: what each image is asked to run, as whom,
and where it may write. The integration tier (tests/integration/test_mysql_server_real.py) runs
these very commands in the images' root filesystems."""

from __future__ import annotations

import subprocess

import pytest

from hakeeper.api.replicateddatabase import DEFAULT_IMAGE, ReplicatedDatabaseSpec
from hakeeper.replicateddatabase import objects


def build(flavor: str, **spec) -> dict:
    return objects.statefulset("db", "ns", ReplicatedDatabaseSpec.model_validate({"flavor": flavor, **spec}))


def pod(flavor: str, **spec) -> dict:
    return build(flavor, **spec)["spec"]["template"]["spec"]


def settings(cnf: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in cnf.splitlines() if "=" in line)


@pytest.mark.parametrize(("flavor", "server", "image"), [
    ("mariadb", "mariadbd", "ghcr.io/hakeeper/mariadb:10.11"),
    ("mysql", "mysqld", "ghcr.io/hakeeper/mysql:9.7"),
])
def test_each_flavor_runs_its_own_server(flavor: str, server: str, image: str) -> None:
    spec = pod(flavor)
    container, *others = spec["containers"]
    # MariaDB has no clone plugin: a backup container serves a copy to a member re-seeded from it
    assert [c["name"] for c in others] == (["backup"] if flavor == "mariadb" else [])
    assert all(c["image"] == image for c in others)
    assert container["command"] == [server]
    assert container["args"] == ["--defaults-file=/etc/mysql/hakeeper-base/my.cnf", "--bind-address=$(POD_IP)"]
    assert container["image"] == image == DEFAULT_IMAGE[flavor]
    assert spec["initContainers"][0]["image"] == image
    assert pod(flavor, image="registry.example/db:1")["containers"][0]["image"] == "registry.example/db:1"


def test_mariadb_initialises_with_mariadb_install_db() -> None:
    script = pod("mariadb")["initContainers"][0]["command"][2]
    assert "mariadb-install-db --no-defaults --datadir=/var/lib/mysql/.initialising " in script
    assert " --force " in script and "mv /var/lib/mysql/.initialising /var/lib/mysql/data" in script
    assert "mysqld " not in script and "--initialize" not in script and "--user" not in script
    assert settings(objects.my_cnf(ReplicatedDatabaseSpec(flavor="mariadb")))["datadir"] == "/var/lib/mysql/data"


def test_mysql_initialises_with_mysqld_into_a_directory_renamed_when_complete() -> None:
    script = pod("mysql")["initContainers"][0]["command"][2]
    assert "mariadb" not in script
    init = next(line for line in script.splitlines() if "--initialize-insecure" in line)
    # the server's own my.cnf (settings fixed at initialisation match), not its init file
    assert "mysqld --defaults-file=/etc/mysql/hakeeper-base/my.cnf --initialize-insecure" in init
    assert "--datadir=/var/lib/mysql/.initialising" in init and "--init-file=/dev/null" in init
    assert "mv /var/lib/mysql/.initialising /var/lib/mysql/data" in script
    assert script.index("--initialize-insecure") < script.index("mv /var/lib/mysql/.initialising")
    # the datadir is inside the claim: a volume's root may hold lost+found, which --initialize refuses
    cnf = settings(objects.my_cnf(ReplicatedDatabaseSpec(flavor="mysql")))
    assert cnf["datadir"] == "/var/lib/mysql/data"
    assert cnf["loose-mysqlx"] == "OFF"


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_nothing_runs_as_root_or_writes_outside_its_volumes(flavor: str) -> None:
    spec = pod(flavor)
    assert spec["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999,
        "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert container["securityContext"] == {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"] if m["name"] != "reseed"}
        everything = {"/var/lib/mysql": "data", "/etc/mysql/hakeeper-base": "base-conf",
                      "/etc/mysql/hakeeper": "conf", "/run/mysqld": "run", "/tmp": "tmp",
                      "/var/lib/mysql-files": "files"}
        # the backup container reads the data and the settings (all of my.cnf's), talks to the server,
        # writes to /tmp
        assert mounts == ({k: v for k, v in everything.items() if v in ("data", "base-conf", "conf", "run", "tmp")}
                          if container["name"] == "backup" else everything)
        # whoever reads my.cnf sees the directory it includes (mariabackup aborts without it, and
        # an image has no such directory of its own: PodFleet's shared root filesystem hid that)
        included = [line.split(" ", 1)[1] for line in objects.my_cnf(ReplicatedDatabaseSpec(flavor=flavor))
                    .splitlines() if line.startswith("!includedir ")]
        assert included and all(path in mounts for path in included)
    # the init container alone reads the re-seed entries, read-only
    reseed_mount, = (m for m in spec["initContainers"][0]["volumeMounts"] if m["name"] == "reseed")
    assert reseed_mount == {"name": "reseed", "mountPath": "/etc/hakeeper/reseed", "readOnly": True}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes) == {"base-conf", "conf", "run", "tmp", "files", "reseed"}  # data: the claim template
    assert volumes["reseed"]["configMap"] == {"name": "db-reseed", "optional": True}
    assert all(volumes[name] == {"name": name, "emptyDir": {}} for name in ("conf", "run", "tmp", "files"))
    # every path the server writes is on one of those volumes
    cnf = settings(objects.my_cnf(ReplicatedDatabaseSpec(flavor=flavor)))
    writable = [m for m in {**objects.SCRATCH_VOLUMES, "data": objects.VOLUME_DIR}.values()]
    for key in ("datadir", "socket", "pid-file", "tmpdir", "secure-file-priv", "init-file"):
        assert any(cnf[key] == path or cnf[key].startswith(path + "/") for path in writable), key


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_init_script_is_posix_sh(flavor: str) -> None:
    script = pod(flavor)["initContainers"][0]["command"]
    assert script[:2] == ["sh", "-c"]
    # dash: Debian's /bin/sh, and as strict a POSIX shell as an image will have
    subprocess.run(["dash", "-n", "-c", script[2]], check=True)


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_init_file_escapes_the_passwords(flavor: str, tmp_path) -> None:
    """The init script run by dash with tricky passwords: the init file holds them as SQL
    literals (the real servers read it in the integration tier)."""
    script = pod(flavor)["initContainers"][0]["command"][2]
    script = script.replace("/etc/mysql/hakeeper/", f"{tmp_path}/")
    script = script[:script.index("umask 022")]  # not the datadir initialisation
    env = {"PATH": "/usr/bin:/bin", "HOSTNAME": "db-2", "POD_IP": "10.1.2.3",
           "ROOT_PASSWORD": "a'b\\c", "REPLICATION_PASSWORD": "$(x) `y` $z", "OPERATOR_PASSWORD": "\\'"}
    subprocess.run(["dash", "-c", script], check=True, env=env)
    assert (tmp_path / "server.cnf").read_text() == "[mysqld]\nserver-id=102\nreport-host=10.1.2.3\n"
    sql = (tmp_path / "init.sql").read_text()
    assert oct((tmp_path / "init.sql").stat().st_mode & 0o777) == "0o600"
    assert "IDENTIFIED BY 'a\\'b\\\\c'" in sql.replace(" WITH caching_sha2_password", "")
    assert "BY '$(x) `y` $z'" in sql
    assert "BY '\\\\\\''" in sql
    assert sql.startswith("SET SESSION sql_mode='';\nSET sql_log_bin=0;") and sql.rstrip().endswith("SET sql_log_bin=1;")
    assert "'app'@'%'" not in sql  # no application-password in the Secret: no application account
    password = "o'k\\\\"  # a quote and two backslashes
    subprocess.run(["dash", "-c", script], check=True, env={**env, "APPLICATION_PASSWORD": password})
    sql = (tmp_path / "init.sql").read_text().replace(" WITH caching_sha2_password", "")
    literal = password.replace("\\", "\\\\").replace("'", "\\'")
    assert f"CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY '{literal}';" in sql


def test_mysql_init_file_uses_caching_sha2_and_lifts_super_read_only() -> None:
    sql = objects.init_sql("mysql")
    assert "mysql_native_password" not in sql
    assert sql.count("IDENTIFIED WITH caching_sha2_password BY") == 7
    assert "ALTER USER 'root'@'localhost'" in sql  # --initialize-insecure left it without a password
    lines = sql.splitlines()
    assert lines[3] == "SET GLOBAL super_read_only=OFF;"
    assert lines[-2] == "SET GLOBAL super_read_only=@hakeeper_super_read_only;"
    assert "super_read_only" not in objects.init_sql("mariadb")
    assert "caching_sha2" not in objects.init_sql("mariadb")


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_resources_apply_to_the_init_container_too(flavor: str) -> None:
    spec = pod(flavor, resources={"limits": {"memory": "1Gi"}})
    assert spec["initContainers"][0]["resources"] == spec["containers"][0]["resources"]
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}


def test_mysql_plugin_settings_survive_initialize() -> None:
    """mysqld --initialize loads no plugin (plugin-load-add is ignored) and aborts on the
    semi-sync plugins' settings unless they are `loose-` (seen on MySQL 9.7)."""
    cnf = objects.my_cnf(ReplicatedDatabaseSpec(flavor="mysql"))
    semi = [line for line in cnf.splitlines() if "rpl-semi-sync" in line]
    assert semi and all(line.startswith("loose-rpl-semi-sync-") for line in semi)
    assert "plugin-load-add=semisync_source.so;semisync_replica.so;mysql_clone.so" in cnf.splitlines()
    # MariaDB's semi-sync is built in: a typo there must fail the start, not pass silently
    assert "loose-" not in objects.my_cnf(ReplicatedDatabaseSpec(flavor="mariadb"))


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_a_deleted_member_waits_in_pre_stop_until_it_replicates(flavor):
    sts = objects.statefulset("db", "ns", ReplicatedDatabaseSpec(flavor=flavor))
    server = sts["spec"]["template"]["spec"]["containers"][0]
    script = server["lifecycle"]["preStop"]["exec"]["command"][2]
    client = {"mariadb": "mariadb", "mysql": "mysql"}[flavor]
    assert f'MYSQL_PWD="$OPERATOR_PASSWORD" {client} --protocol=socket' in script  # never on a command line
    assert "|| exit 0" in script  # a server that does not answer is not waited for
    assert f"+ {objects.PRE_STOP_SECONDS} ))" in script
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > objects.PRE_STOP_SECONDS
    assert {e["name"] for e in server["env"]} == {"POD_IP", "OPERATOR_PASSWORD"}


def test_deleting_the_primary_pod_asks_for_a_switchover_to_the_best_replica():
    from hakeeper.replicateddatabase.clustering.classify import ANY_REPLICA
    from hakeeper.replicateddatabase.reconcile import switchover_request

    body = {"metadata": {"generation": 1}, "status": {"currentPrimary": "db-1"}}
    spec = ReplicatedDatabaseSpec(flavor="mariadb")
    pods = {"db-0": {"metadata": {"uid": "a", "deletionTimestamp": "2030-01-01T00:00:00Z"}},
            "db-1": {"metadata": {"uid": "b"}}}
    assert switchover_request(body, "db", spec, pods) is None  # a replica's pod: nothing to do
    pods["db-1"]["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    assert switchover_request(body, "db", spec, pods) == ("terminating:b", ANY_REPLICA)
    body["status"]["handledSwitchover"] = "terminating:b"
    assert switchover_request(body, "db", spec, pods) is None


def test_the_application_account_comes_from_the_secret_without_administrative_privileges(tmp_path) -> None:
    """Issue 11 item 4: a generated application account (user app, key application-password)
    that read_only stops, created at every start like the operator's, only when the key is there."""
    secret = objects.credentials_secret("db", "shop")["stringData"]
    assert secret["application-user"] == "app" and len(secret["application-password"]) >= 24
    for flavor in ("mariadb", "mysql"):
        sql = objects.application_sql(flavor)
        assert "GRANT SELECT, INSERT, UPDATE, DELETE" in sql and "'app'@'%'" in sql
        assert not any(p in sql for p in ("SUPER", "ALL PRIVILEGES", "GRANT OPTION", "READ_ONLY ADMIN"))
        assert sql.startswith("SET SESSION sql_mode='';\nSET sql_log_bin=0;")
    init = next(c for c in objects.statefulset("db", "shop", ReplicatedDatabaseSpec())["spec"]["template"]["spec"]
                ["initContainers"])
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert env["APPLICATION_PASSWORD"] == {"name": "db-credentials", "key": "application-password", "optional": True}
    assert 'if [ -n "${APPLICATION_PASSWORD:-}" ]' in init["command"][2]


def test_the_operator_rolls_out_a_new_template_and_a_new_config_is_a_new_template() -> None:
    """Issue 11 item 5: the StatefulSet controller never restarts a member by itself (OnDelete:
    hakeeper.replicateddatabase.rollout does, replicas first); a spec.config change changes the
    pod template, so it reaches the servers through that rollout."""
    base = build("mariadb", config={"max_connections": "100"})
    assert base["spec"]["updateStrategy"] == {"type": "OnDelete"}

    def config_hash(statefulset: dict) -> str:
        return statefulset["spec"]["template"]["metadata"]["annotations"]["hakeeper.io/config-hash"]

    assert config_hash(build("mariadb", config={"max_connections": "100"})) == config_hash(base)
    assert config_hash(build("mariadb", config={"max_connections": "200"})) != config_hash(base)
    # what is not in my.cnf does not restart anyone through the hash
    assert config_hash(build("mariadb", config={"max_connections": "100"}, replicas=5)) == config_hash(base)

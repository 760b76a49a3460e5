"""The container images (hack/imagebuild): every one is built from its recipe, loads into a
containerd under the reference the product and tests use, and runs what it claims, as the user
it claims. Cached builds make this cheap: a run after `make images` builds nothing.

A private containerd (its own socket and state, no CRI plugin) keeps its content between runs
under ~/.cache/hakeeper/images/test-containerd, so a second load imports nothing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import imagebuild
from hakeeper.agents import haproxy_runtime as runtime
from hakeeper.api.loadbalancerpool import LoadBalancerPoolSpec
from hakeeper.loadbalancerpool import objects
from hakeeper.loadbalancerpool.haproxy import config
from imagebuild import containerd
from imagebuild.builder import base_tag, build_binary, images_dir
from imagebuild.table import BASES, Image

from ..support.polling import poll

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REFERENCES = {image.name: image.reference for image in imagebuild.IMAGES}


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    return imagebuild.build()


@pytest.fixture(scope="module")
def address(built: dict[str, Path]) -> Iterator[str]:
    """A containerd of the test's own, with every image loaded into namespace k8s.io."""
    root = images_dir() / "test-containerd"
    root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="hk-ctd-", dir="/tmp"))
    sock = state / "containerd.sock"
    config = state / "config.toml"
    config.write_text(f'version = 2\nroot = "{root}"\nstate = "{state}/state"\n'
                      f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                      f'[grpc]\n  address = "{sock}"\n')
    log = open(state / "containerd.log", "wb")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        def answers() -> bool:
            assert proc.poll() is None, (state / "containerd.log").read_text()[-2000:]
            return subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True).returncode == 0
        poll(answers, 30, what=f"containerd answers (is another one using {root}?)")
        imagebuild.load(str(sock))
        yield str(sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def ctr_run(address: str, name: str, *argv: str, options: tuple[str, ...] = ()) -> str:
    """Runs argv in the image as its USER; returns stdout+stderr, failing on a non-zero exit."""
    done = containerd.run(address, REFERENCES[name], *argv, options=options)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{name}: {' '.join(argv)} exited {done.returncode}:\n{out}"
    return out


def test_every_image_is_built_and_cached(built: dict[str, Path]) -> None:
    assert set(built) == set(REFERENCES)
    for name, tar in built.items():
        assert tar.is_file() and tar.stat().st_size > 0, name
        assert tar.parent == images_dir() and tar.name.startswith(f"{name}-")
    # a second build is the cache: no daemon, no work
    started = time.monotonic()
    again = imagebuild.build_all()
    assert all(r.cached for r in again)
    assert {r.name: r.tar for r in again} == built
    assert time.monotonic() - started < 10


def test_images_load_under_their_references_and_reload_is_free(address: str) -> None:
    there = containerd.present(address)
    for reference in REFERENCES.values():
        assert there.get(reference), f"{reference} not in containerd (or without its input hash label)"
    started = time.monotonic()
    assert imagebuild.load(address) == REFERENCES
    assert time.monotonic() - started < 15, "a load of images already there should import nothing"


def test_operator_image_runs_as_65532_with_a_read_only_root(address: str) -> None:
    assert ctr_run(address, "hakeeper", "id", "-u").strip() == "65532"
    assert "hakeeper" in ctr_run(address, "hakeeper", "id", "-un")
    done = subprocess.run(["ctr", "--address", address, "-n", "k8s.io", "run", "--rm", "--read-only",
                           REFERENCES["hakeeper"], f"ro-{uuid.uuid4().hex[:8]}", "hakeeper", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage: hakeeper" in done.stdout


def test_haproxy_is_2_6_as_65532(address: str) -> None:
    assert "version 2.6." in ctr_run(address, "haproxy", "haproxy", "-v")
    assert ctr_run(address, "haproxy", "id", "-un").strip() == "haproxy"
    assert ctr_run(address, "haproxy", "id", "-u").strip() == "65532"


def test_haproxy_runs_the_balancer_deployment_command(address: str, tmp_path: Path) -> None:
    """The Deployment's exact command (objects.py) on a configuration the operator renders,
    with /var/run/hakeeper a directory of ours: the master socket answers as 65532."""
    manifest = REPO / "examples" / "loadbalancerpool" / "http-roundrobin.yaml"
    cfg = subprocess.run([str(REPO / ".venv" / "bin" / "hakeeper"), "render", "-f", str(manifest),
                          "-b", "web-0=127.0.0.1:9000"], capture_output=True, text=True, check=True).stdout
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)  # an emptyDir
    (run_dir / "haproxy.cfg").write_text(cfg)
    spec = LoadBalancerPoolSpec.model_validate(yaml.safe_load(manifest.read_text())["spec"])
    haproxy = objects.deployment("web", "default", spec, "agent", "hash")["spec"]["template"]["spec"]["containers"][0]
    name = f"haproxy-{uuid.uuid4().hex[:8]}"
    ctr = ["ctr", "--address", address, "-n", "k8s.io"]
    subprocess.run([*ctr, "run", "-d", "--read-only", "--env", "POD_IP=127.0.0.1",
                    "--mount", f"type=bind,src={run_dir},dst={objects.RUN_DIR},options=rbind:rw",
                    REFERENCES["haproxy"], name, *haproxy["command"], *haproxy["args"]],
                   check=True, capture_output=True, timeout=60)
    try:
        master = run_dir / "master.sock"
        poll(master.exists, 20, what="haproxy's master socket")
        assert master.stat().st_uid == 65532

        def workers() -> tuple[int, ...]:
            with contextlib.suppress(OSError, runtime.RuntimeApiError):
                return runtime.show_proc(str(master)).workers
            return ()
        poll(workers, 20, what="the master lists a worker")
        # the agent's side: the admin socket of the worker answers, and runs the configuration
        info = runtime.show_info(str(run_dir / config.ADMIN_SOCKET))
        assert info["Version"].startswith("2.6.")
        structure = cfg.splitlines()[0].rsplit("structure ", 1)[1].strip()  # render's header line
        assert runtime.running_structure(str(run_dir / config.ADMIN_SOCKET)) == structure
    finally:
        subprocess.run([*ctr, "task", "kill", "-s", "SIGKILL", name], capture_output=True)

        def gone() -> bool:
            if subprocess.run([*ctr, "task", "delete", name], capture_output=True).returncode == 0:
                return True
            return name not in subprocess.run([*ctr, "task", "ls", "-q"], capture_output=True, text=True).stdout.split()
        poll(gone, 20, what="the haproxy task is deleted")
        subprocess.run([*ctr, "container", "delete", name], capture_output=True)


def test_keepalived_is_2_2_7_beside_the_agent(address: str) -> None:
    assert "v2.2.7" in ctr_run(address, "keepalived", "keepalived", "--version")
    assert "usage: hakeeper" in ctr_run(address, "keepalived", "hakeeper", "--help")


def test_mariadb_is_10_11_and_initialises_as_mysql(address: str, tmp_path: Path) -> None:
    assert "Ver 10.11." in ctr_run(address, "mariadb", "mariadbd", "--version")
    assert ctr_run(address, "mariadb", "id", "-u").strip() == "999"
    # the StatefulSet's init container's command, as the image's user (999), with the
    # /etc/hosts a pod gets from the kubelet (mariadb-install-db resolves localhost)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    out = ctr_run(address, "mariadb", "sh", "-c",
                  "mariadb-install-db --datadir=/tmp/d --skip-test-db --auth-root-authentication-method=socket"
                  " 2>&1 && ls /tmp/d/mysql/user.frm /tmp/d/mysql/db.frm",
                  options=("--mount", f"type=bind,src={hosts},dst=/etc/hosts,options=rbind:ro"))
    assert "user.frm" in out


def test_mysql_is_9_as_mysql(address: str) -> None:
    assert "Ver 9.7." in ctr_run(address, "mysql", "mysqld", "--version")
    assert ctr_run(address, "mysql", "id", "-u").strip() == "999"


def test_prometheus_coredns_and_pause(address: str) -> None:
    assert "version 2.42." in ctr_run(address, "prometheus", "prometheus", "--version")
    assert "CoreDNS-1.15.0" in ctr_run(address, "coredns", "/coredns", "-version")
    assert "catatonit" in ctr_run(address, "pause", "/pause", "--version")


def test_alertmanager_is_debians_0_25(address: str) -> None:
    assert "version 0.25." in ctr_run(address, "alertmanager", "prometheus-alertmanager", "--version")
    assert ctr_run(address, "alertmanager", "id", "-u").strip() == "997"


def test_http_backend_answers_with_its_name(address: str) -> None:
    probe = ("import subprocess, sys, time, urllib.request\n"
             "p = subprocess.Popen([sys.executable, '/app/httpbackend.py', '--address', '127.0.0.1',"
             " '--port', '18080', '--name', 'web-7'])\n"
             "deadline = time.monotonic() + 20\n"
             "while True:\n"
             "    try:\n"
             "        r = urllib.request.urlopen('http://127.0.0.1:18080/', timeout=2); break\n"
             "    except OSError:\n"
             "        if time.monotonic() > deadline: raise\n"
             "        time.sleep(0.05)\n"
             "print(r.read().decode().strip(), r.headers['X-Backend'])\n"
             "p.terminate(); p.wait(10)\n")
    # server and client inside the container, in its own network namespace (loopback only)
    out = ctr_run(address, "test-http-backend", "python3", "-c", probe)
    assert "web-7 web-7" in out


def test_external_dns_is_0_22_0_with_its_rfc2136_provider(address: str) -> None:
    out = ctr_run(address, "external-dns", "/external-dns", "--help")
    assert "--rfc2136-host" in out and "--crd-source-kind" in out
    image = imagebuild.by_name()["external-dns"]
    binary = build_binary(image)  # cached: the one the image holds
    info = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True, text=True, check=True).stdout
    assert any(line.split()[:3] == ["mod", "sigs.k8s.io/external-dns", "v0.22.0"] for line in info.splitlines()), info


BIND_CHECK = """
/usr/local/bin/start-named >/tmp/named.log 2>&1 &
i=0
until dig @127.0.0.1 -p 5353 hakeeper.test SOA +short | grep -q ns1; do
  i=$((i+1)); [ $i -lt 200 ] || { cat /tmp/named.log; exit 1; }; sleep 0.05
done
update() {  # $1: the key's secret; the rest: records to add, in one RFC 2136 update
  key=$1; shift
  { echo "server 127.0.0.1 5353"; echo "zone hakeeper.test"
    for rr in "$@"; do echo "update add $rr"; done; echo send; } | nsupdate -y "hmac-sha256:externaldns:$key"
}
update "$SECRET" "www.hakeeper.test 5 A 192.0.2.7" "www.hakeeper.test 5 A 192.0.2.7" \
  "www.hakeeper.test 5 A 192.0.2.7" "www.hakeeper.test 5 A 192.0.2.8"
echo "answer: $(dig @127.0.0.1 -p 5353 www.hakeeper.test A +short | sort | tr '\\n' ' ')"
update "$OTHER" "bad.hakeeper.test 5 A 192.0.2.9" && echo "unknown key: accepted" || echo "unknown key: refused"
echo "bad: $(dig @127.0.0.1 -p 5353 bad.hakeeper.test A +short)"
"""


def test_bind9_takes_tsig_signed_updates_and_keeps_one_copy_of_a_record(address: str, tmp_path: Path) -> None:
    """BIND 9.18 as the engine dns e2e runs it: the zone takes RFC 2136 updates signed with the
    key "externaldns" and no others; an update adding the same A record three times leaves one
    (RFC 2136 section 3.4.2.2, RFC 2181 section 5): a weight cannot be a repeated record."""
    assert "BIND 9.18." in ctr_run(address, "bind9", "named", "-V")
    key, other = (base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2))
    keys = tmp_path / "tsig"
    keys.mkdir()
    (keys / "externaldns.key").write_text(f'key "externaldns" {{ algorithm hmac-sha256; secret "{key}"; }};\n')
    keys.chmod(0o755)
    (keys / "externaldns.key").chmod(0o644)
    out = ctr_run(address, "bind9", "sh", "-c", BIND_CHECK, options=(
        "--mount", f"type=bind,src={keys},dst=/etc/bind/tsig,options=rbind:ro",
        "--env", f"SECRET={key}", "--env", f"OTHER={other}"))
    assert "answer: 192.0.2.7 192.0.2.8 " in out, out
    assert "unknown key: refused" in out and "bad: " in out.splitlines(), out


def test_a_broken_recipe_names_the_image_and_the_step(tmp_path: Path) -> None:
    recipe = tmp_path / "broken"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text("ARG BASE=debian:bookworm-slim\nFROM ${BASE}\nRUN echo about to fail && false\n")
    broken = Image("broken", "ghcr.io/hakeeper/broken:test", str(recipe))
    with pytest.raises(imagebuild.ImageBuildError) as failed:
        imagebuild.build(["broken"], images=[broken])
    e = failed.value
    assert (e.image, e.step) == ("broken", "docker build")
    assert "image broken: docker build failed" in str(e)
    assert "about to fail" in e.log and "non-zero code" in e.log
    assert not list(images_dir().glob("broken-*"))
    # the daemon is gone, and left no directory, mount, bridge or iptables chain behind (a
    # directory whose dockerd still runs is another build's, running now)
    for exec_root in Path("/tmp").glob("hk-dockerd-*"):
        pid = exec_root / "docker.pid"
        assert pid.exists() and Path(f"/proc/{pid.read_text().strip()}").exists(), f"{exec_root} left behind"
    assert not [m for m in open("/proc/self/mountinfo").read().split("\n") if " /tmp/hk-dockerd-" in m
                and not (Path(m.split()[4].split("/netns/")[0]) / "docker.pid").exists()]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "docker0" not in links
    if shutil.which("iptables"):
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
        assert "DOCKER" not in rules


def test_the_hash_follows_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text("FROM x\n")
    image = Image("r", "r:1", str(recipe))
    table = {"r": image}
    first = imagebuild.image_hash(image, table)
    assert imagebuild.image_hash(image, table) == first
    (recipe / "extra.txt").write_text("1")
    second = imagebuild.image_hash(image, table)
    assert second != first
    assert imagebuild.image_hash(Image("r", "r:1", str(recipe), build_args={"A": "1"}), table) != second
    assert imagebuild.image_hash(Image("r", "r:1", str(recipe), base="sid"), table) != second
    assert base_tag(BASES["bookworm"]) != base_tag(BASES["sid"])

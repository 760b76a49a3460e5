"""A real S3-compatible object store for the tests: SeaweedFS's `weed server -s3`.

`weed` is built from the Go module proxy by hack/build-seaweedfs.sh (cached under
~/.cache/hakeeper/tools/seaweedfs-<version>; MinIO's server is AGPL, so not used here). One
process runs the master, a volume server, the filer and the S3 gateway, all on one loopback
address, with its data in a temporary directory; the S3 gateway accepts one identity (access
key and secret below) and a bucket is made before the store is handed out. stop() kills it and
removes its data.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .polling import poll
from .tools import ROOT

ACCESS_KEY = "hakeeper-test"
SECRET_KEY = "hakeeper-test-secret-key"
S3_PORT = 8333
# the master, volume server and filer on their own ports; gRPC on each port + 10000 (SeaweedFS's rule)
MASTER_PORT, VOLUME_PORT, FILER_PORT = 9333, 8080, 8888


def weed() -> pathlib.Path:
    """The `weed` binary (hack/build-seaweedfs.sh builds it when missing: minutes when cold).

    Raises subprocess.CalledProcessError when the build fails."""
    out = subprocess.run(["bash", str(ROOT / "hack/build-seaweedfs.sh")], check=True, capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


@dataclass
class ObjectStore:
    """A running SeaweedFS: its S3 endpoint (http://<host>:<S3_PORT>), the bucket made, the
    credentials, the process and its data directory."""

    host: str
    bucket: str
    process: subprocess.Popen
    data: pathlib.Path
    log: pathlib.Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    tls: bool = False
    """The S3 gateway speaks HTTPS (start's `tls`)."""
    offset: int = 0
    """Added to every port (start's `offset`)."""

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{S3_PORT + self.offset}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        """Kills the server (its whole process group) and removes its data."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        shutil.rmtree(self.data, ignore_errors=True)

    def kill(self) -> None:
        """The store goes away (a backup then finds it unreachable); its data stays."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _answers(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def start(host: str = "127.0.60.1", bucket: str = "backups", timeout: float = 120,
          tls: tuple[str, str] | None = None, offset: int = 0) -> ObjectStore:
    """Starts SeaweedFS on `host` (a loopback address of its own, so its fixed ports meet no
    other test's), makes `bucket` and waits until the S3 gateway answers for it. tls: (the
    certificate, its key), PEM: the S3 gateway then speaks HTTPS only, with that certificate.
    offset: added to every port, for a second store while another runs: a port is not only a
    listener on `host`. The filer's local socket, through which the S3 gateway reaches it, is
    /tmp/seaweedfs-filer-<port>.sock, and a starting filer removes what is there: a second store
    with the same ports took the first one's socket, and never made its bucket.

    Raises TimeoutError (with the server's log) when it does not come up in `timeout` seconds."""
    binary = weed()
    data = pathlib.Path(tempfile.mkdtemp(prefix="hk-seaweedfs-"))
    (data / "store").mkdir()
    config = data / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "hakeeper", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    log = data / "weed.log"
    tls_args = []
    if tls is not None:
        (data / "s3.crt").write_text(tls[0])
        (data / "s3.key").write_text(tls[1])
        tls_args = [f"-s3.cert.file={data / 's3.crt'}", f"-s3.key.file={data / 's3.key'}"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(binary), "server", f"-dir={data / 'store'}", f"-ip={host}", f"-ip.bind={host}",
             f"-master.port={MASTER_PORT + offset}", f"-volume.port={VOLUME_PORT + offset}",
             f"-filer.port={FILER_PORT + offset}", "-master.volumeSizeLimitMB=256", "-volume.max=32", "-filer", "-s3",
             f"-s3.port={S3_PORT + offset}",
             f"-s3.config={config}", "-s3.autoCreateBucket=false",
             # no Iceberg or Lance catalogue listeners: only what the tests use
             "-s3.port.iceberg=0", "-s3.port.lance=0", *tls_args],
            stdout=out, stderr=out, start_new_session=True)
    store = ObjectStore(host=host, bucket=bucket, process=process, data=data, log=log, tls=tls is not None,
                        offset=offset)
    try:
        for port in (MASTER_PORT + offset, FILER_PORT + offset, S3_PORT + offset):
            poll(lambda port=port: process.poll() is None and _answers(host, port), timeout,
                 what=f"SeaweedFS's port {port}", interval=0.2, ignore=OSError)
        # the bucket: SeaweedFS's own shell (the S3 API would need a signing client)
        poll(lambda: _make_bucket(binary, host, bucket, offset), timeout, what=f"bucket {bucket}", interval=0.5)
    except BaseException as exc:
        tail = store.log_tail()
        store.stop()
        raise TimeoutError(f"SeaweedFS did not start: {exc}; log tail:\n{tail}") from exc
    return store


def _make_bucket(binary: pathlib.Path, host: str, bucket: str, offset: int) -> bool:
    done = subprocess.run([str(binary), "shell", f"-master={host}:{MASTER_PORT + offset}",
                           f"-filer={host}:{FILER_PORT + offset}"],
                          input=f"s3.bucket.create -name {bucket}\ns3.bucket.list\n", capture_output=True, text=True,
                          timeout=60)
    return done.returncode == 0 and bucket in done.stdout


@contextmanager
def running(host: str = "127.0.60.1", bucket: str = "backups", tls: tuple[str, str] | None = None,
            offset: int = 0) -> Iterator[ObjectStore]:
    """start(), and stop() whatever happens."""
    store = start(host, bucket, tls=tls, offset=offset)
    try:
        yield store
    finally:
        store.stop()

"""`python -m localcluster up|down|status|serve --state-dir DIR` (PYTHONPATH=hack).

`up` starts `serve` in the background and returns once the cluster answers; `down` stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

from .cluster import LocalCluster
from .controlplane import pid_alive


def _bin_dir(value: str | None) -> pathlib.Path:
    if value:
        return pathlib.Path(value)
    kubectl = shutil.which("kube-apiserver")
    if kubectl is None:
        sys.exit("kube-apiserver is not on PATH: run `make tools` or pass --bin-dir")
    return pathlib.Path(kubectl).parent


def serve(state: pathlib.Path, bin_dir: pathlib.Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cluster = LocalCluster(state, bin_dir)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    cluster.start()
    print(cluster.describe(), flush=True)
    (state / "ready").write_text(str(os.getpid()))
    try:
        done.wait()
    finally:
        cluster.stop()
        (state / "ready").unlink(missing_ok=True)


def up(state: pathlib.Path, bin_dir: pathlib.Path, timeout: float = 600) -> None:
    pid_file = state / "pid"
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        print(f"already running (pid {pid_file.read_text()}); kubeconfig {state / 'kubeconfig'}")
        return
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    log = open(state / "serve.log", "ab")
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-m", "localcluster", "serve", "--state-dir", str(state),
                                "--bin-dir", str(bin_dir)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env=env)
    pid_file.write_text(str(process.pid))
    started = time.monotonic()
    while not (state / "ready").exists():
        if process.poll() is not None:
            sys.exit(f"the local cluster did not start:\n{(state / 'serve.log').read_text()[-4000:]}")
        if time.monotonic() - started > timeout:
            process.terminate()
            sys.exit(f"the local cluster did not start within {timeout}s; see {state / 'serve.log'}")
        time.sleep(0.2)
    print(f"local cluster up in {time.monotonic() - started:.1f}s; kubeconfig {state / 'kubeconfig'}")


def down(state: pathlib.Path, timeout: float = 240) -> None:
    pid_file = state / "pid"
    if not pid_file.exists():
        print("not running")
        return
    pid = int(pid_file.read_text())
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(state, ignore_errors=True)
    print("local cluster stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "serve"])
    parser.add_argument("--state-dir", default=".cluster")
    parser.add_argument("--bin-dir", default=None)
    args = parser.parse_args(argv)
    state = pathlib.Path(args.state_dir).resolve()
    if args.command == "serve":
        serve(state, _bin_dir(args.bin_dir))
    elif args.command == "up":
        up(state, _bin_dir(args.bin_dir))
    elif args.command == "down":
        down(state)
    else:
        running = (state / "ready").exists() and pid_alive(int((state / "pid").read_text()))
        print(f"running; kubeconfig {state / 'kubeconfig'}" if running else "not running")


if __name__ == "__main__":
    main()

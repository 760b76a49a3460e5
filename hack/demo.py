"""`make demo`: a local control plane, the CRDs, the operator and the quickstart samples.

Prints `kubectl get hakeeper` once everything reports Ready, then stops what it started
(pass --keep to leave it running until Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))

from localcluster.pytest_support import cluster_session  # noqa: E402


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    keep = args.parse_args().keep
    bin_dir = pathlib.Path(os.environ.get("HAKEEPER_TOOLS_BIN") or subprocess.run(
        ["bash", str(ROOT / "hack/build-tools.sh")], check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1])
    started = time.monotonic()
    with cluster_session(bin_dir) as local, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "KUBECONFIG": str(local.kubeconfig), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        print(f"control plane up in {time.monotonic() - started:.1f}s; KUBECONFIG={local.kubeconfig}")

        def kubectl(*argv: str) -> str:
            return subprocess.run(["kubectl", *argv], env=env, check=True, capture_output=True, text=True).stdout

        kubectl("apply", "-f", str(ROOT / "crds"))
        kubectl("wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
        log = open(pathlib.Path(tmp) / "operator.log", "w")
        operator = subprocess.Popen([sys.executable, "-m", "hakeeper", "run", "--standalone", "--all-namespaces"],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            print(kubectl("apply", "-f", str(ROOT / "examples/quickstart")), end="")
            kubectl("wait", "--for=condition=Ready", "--timeout=90s",
                    "lbp/web", "rdb/orders", "dp/peak-shedding")
            print("\n$ kubectl get hakeeper")
            print(kubectl("get", "hakeeper"))
            if keep:
                print("running; Ctrl-C stops everything")
                while operator.poll() is None:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            operator.terminate()
            operator.wait(15)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

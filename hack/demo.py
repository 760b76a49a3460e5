"""`make demo`: a one-node cluster on this machine, the chart, and the quickstart samples.

Starts the local cluster (hack/localcluster, with the images built from the repository's
recipes), applies the CRDs, installs the chart with helm as a user would (the operator runs as
its pod), applies examples/quickstart, prints `kubectl get hakeeper` and the pods once
everything reports Ready, then stops what it started (pass --keep to leave it running until
Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
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
    with cluster_session(bin_dir) as local:
        env = {**os.environ, "KUBECONFIG": str(local.kubeconfig), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        print(f"cluster up in {time.monotonic() - started:.1f}s; KUBECONFIG={local.kubeconfig}")

        def run(*argv: str) -> str:
            return subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout

        run("kubectl", "apply", "-f", str(ROOT / "crds"))
        run("kubectl", "wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
        print(run("helm", "install", "hakeeper", str(ROOT / "charts/hakeeper"), "-n", "hakeeper-system",
                  "--create-namespace", "--set", "replicaCount=1", "--wait", "--timeout", "5m").splitlines()[0])
        try:
            print(run("kubectl", "apply", "-f", str(ROOT / "examples/quickstart")), end="")
            run("kubectl", "wait", "--for=condition=Ready", "--timeout=300s", "lbp/web", "rdb/orders", "dp/peak-shedding")
            print("\n$ kubectl get hakeeper")
            print(run("kubectl", "get", "hakeeper"))
            print("$ kubectl get pods -A")
            print(run("kubectl", "get", "pods", "-A"))
            if keep:
                print(f"running; export KUBECONFIG={local.kubeconfig}; Ctrl-C stops everything")
                while True:
                    time.sleep(1)
        except KeyboardInterrupt:
            pass
        except subprocess.CalledProcessError as error:
            print(f"{' '.join(error.cmd)} failed:\n{error.stderr}", file=sys.stderr)
            print(run("kubectl", "get", "hakeeper,pods", "-A"), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

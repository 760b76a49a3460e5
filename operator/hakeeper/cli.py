"""The `hakeeper` command: run the operator, print the CRDs, prepare an uninstall."""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import sys
import zlib
from collections.abc import Sequence

HANDLER_MODULES = (
    "hakeeper.platform.settings",
    "hakeeper.platform.collector",
    "hakeeper.loadbalancerpool.handlers",
    "hakeeper.replicateddatabase.handlers",
    "hakeeper.degradationpolicy.handlers",
)


def peering_priority(given: int | None, pod_name: str | None) -> int:
    """kopf pauses every replica when two share a priority, so each pod takes its own.

    The CRC-32 of the pod name differs between the live pods of a Deployment; the highest
    acts, the others stand by and take over when it leaves the peering.
    """
    if given is not None:
        return given
    return zlib.crc32(pod_name.encode()) if pod_name else 0


def _run(args: argparse.Namespace) -> int:
    from hakeeper.platform import glibc

    glibc.limit_arenas()  # before kopf and the handler modules start threads
    import kopf

    for module in HANDLER_MODULES:  # importing a handler module registers its handlers with kopf
        importlib.import_module(module)

    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    from hakeeper.platform.redact import redact_logs

    redact_logs()  # a URL's credentials (a policy's prometheus.url) never reach the log or an Event
    if args.metrics_port:
        from hakeeper.platform import metrics

        metrics.serve(args.metrics_port)
    if args.namespace and args.all_namespaces:
        raise SystemExit("hakeeper run: give --namespace or --all-namespaces, not both")
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=peering_priority(args.priority, os.environ.get("POD_NAME")),
        liveness_endpoint=args.liveness,
    )
    return 0


def _crds(args: argparse.Namespace) -> int:
    from hakeeper.api.crdgen import all_crds

    files = all_crds()
    if args.check:
        target = pathlib.Path(args.check)
        stale = [name for name, text in files.items()
                 if not (target / name).exists() or (target / name).read_text() != text]
        extra = sorted(p.name for p in target.glob("*.yaml") if p.name not in files)
        for name in stale:
            print(f"{target / name}: differs from the models (run `make crds`)", file=sys.stderr)
        for name in extra:
            print(f"{target / name}: no model generates this file", file=sys.stderr)
        return 1 if stale or extra else 0
    if args.output_dir:
        target = pathlib.Path(args.output_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (target / name).write_text(text)
        return 0
    sys.stdout.write("---\n".join(files.values()))
    return 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from hakeeper.api.configmaps.haproxy import ConfigError
    from hakeeper.api.configmaps.keepalived import ConfigError as KeepalivedConfigError
    from hakeeper.api.offline import InvalidManifest
    from hakeeper.loadbalancerpool.render import RenderError, parse_backend, render_documents

    try:
        text = sys.stdin.read() if args.filename == "-" else pathlib.Path(args.filename).read_text()
        backends = [parse_backend(b) for b in args.backend]
        sys.stdout.write(render_documents(text, backends, as_configmap=args.configmap))
    except InvalidManifest as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (RenderError, ConfigError, KeepalivedConfigError, OSError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _agent(args: argparse.Namespace) -> int:
    if args.engine == "keepalived":
        from hakeeper.agents import keepalived as keepalived_agent

        return keepalived_agent.main(args.agent_args)
    from hakeeper.agents import haproxy as agent

    return agent.main(args.agent_args)


def _uninstall(args: argparse.Namespace) -> int:
    from hakeeper.platform.kube import ApiError, Kube
    from hakeeper.uninstall.act import Uninstall, UninstallError

    operator = None
    if args.operator:
        namespace, _, name = args.operator.rpartition("/")
        operator = (namespace or os.environ.get("POD_NAMESPACE") or "default", name)
    try:
        Uninstall(Kube(), tuple(args.namespace) or None).run(operator, args.timeout)
    except (UninstallError, ApiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hakeeper", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; glob patterns allowed)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument("--peering", default="hakeeper",
                         help="kopf peering object shared by replicas; only the highest-priority one acts")
    peering.add_argument("--standalone", action="store_true", help="no peering: the only replica")
    run.add_argument("--priority", type=int, default=None,
                     help="peering priority of this replica (default: derived from $POD_NAME, else 0)")
    run.add_argument("--liveness", default=None, metavar="URL",
                     help="serve liveness probes, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, default=8081, metavar="PORT",
                     help="serve the operator's Prometheus metrics on :PORT/metrics (0: not at all)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.add_argument("--log-format", default="full", choices=["plain", "full", "json"])
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions generated from the models")
    out = crds.add_mutually_exclusive_group()
    out.add_argument("--output-dir", metavar="DIR", help="write one file per CRD into DIR")
    out.add_argument("--check", metavar="DIR", help="exit 1 when DIR differs from the models")
    crds.set_defaults(func=_crds)

    render = sub.add_parser("render", help="print the balancer configuration of a pool manifest, offline")
    render.add_argument("-f", "--filename", required=True, help="manifest file (- for stdin)")
    render.add_argument("-b", "--backend", action="append", default=[], metavar="[NAME=]ADDR:PORT[@WEIGHT]",
                        help="a backend server (repeatable), standing in for the EndpointSlices")
    render.add_argument("--configmap", action="store_true", help="print the ConfigMap the balancers read")
    render.set_defaults(func=_render)

    uninstall = sub.add_parser(
        "uninstall", help="before removing hakeeper: stop the operator, restore every Deployment a "
        "DegradationPolicy shed, remove hakeeper's finalizers (the chart's pre-delete hook runs it)")
    uninstall.add_argument("--operator", metavar="[NAMESPACE/]NAME", default=None,
                           help="the operator's Deployment, scaled to 0 first (namespace default: $POD_NAMESPACE)")
    uscope = uninstall.add_mutually_exclusive_group()
    uscope.add_argument("-n", "--namespace", action="append", default=[],
                        help="a namespace the operator serves (repeatable; exact names)")
    uscope.add_argument("-A", "--all-namespaces", action="store_true", help="the whole cluster (default)")
    uninstall.add_argument("--timeout", type=float, default=240.0, metavar="SECONDS",
                           help="fail when the three steps take longer (default 240)")
    uninstall.set_defaults(func=_uninstall)

    agent = sub.add_parser("agent", help="the balancer pods' sidecar (`hakeeper agent haproxy|keepalived --help`)")
    agent.add_argument("engine", choices=["haproxy", "keepalived"])
    agent.add_argument("agent_args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=_agent)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""python -m imagebuild {build,load,list}: see the package's docstring."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from . import builder, containerd
from .table import BASES, IMAGES, by_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imagebuild", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the images missing from ~/.cache/hakeeper/images (default: all)")
    b.add_argument("names", nargs="*")
    b.add_argument("--keep-going", "-k", action="store_true", help="after a failure, build the other images")
    ld = sub.add_parser("load", help="build what is missing, then import the images into a containerd")
    ld.add_argument("--address", required=True, help="containerd socket")
    ld.add_argument("--namespace", default="k8s.io")
    ld.add_argument("names", nargs="*")
    ls = sub.add_parser("list", help="the table: name, reference, recipe, base, cached tar")
    ls.add_argument("--json", action="store_true", help="one JSON object per image, for scripts")
    ls.add_argument("--no-node", action="store_true", help="leave out the node's own images (pause, coredns)")
    args = parser.parse_args(argv)
    # A stopped build (CI's timeout, make interrupted) still stops its private dockerd and
    # unmounts what it mounted: SIGTERM unwinds through the `finally`s like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.command == "build":
            results = builder.build_all(args.names or None, keep_going=args.keep_going)
            print(builder.format_table(results))
            print(f"total {sum(r.seconds for r in results):.1f} s")
        elif args.command == "load":
            started = time.monotonic()
            loaded = containerd.load(args.address, args.names or None, namespace=args.namespace)
            for name, reference in loaded.items():
                print(f"{name}\t{reference}")
            print(f"loaded {len(loaded)} images into {args.address} in {time.monotonic() - started:.1f} s")
        else:
            table = by_name()
            for image in IMAGES:
                if args.no_node and image.node:
                    continue
                tar = builder.tar_path(image, table)
                if args.json:
                    base = image.base
                    default_base = (table[base[6:]].reference if base.startswith("image:")
                                    else BASES[base].default)
                    print(json.dumps({"name": image.name, "reference": image.reference, "recipe": image.recipe,
                                      "dockerfile": f"{image.recipe}/{image.dockerfile}",
                                      "context": image.context_dir, "base": base, "default_base": default_base,
                                      "build_args": image.build_args, "binary": image.binary, "node": image.node,
                                      "tar": str(tar), "cached": tar.exists()}))
                else:
                    print(f"{image.name:18} {image.reference:42} {image.recipe:26} {image.base:16} "
                          f"{'cached' if tar.exists() else 'missing'}")
    except builder.ImageBuildError as e:
        print(f"imagebuild: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one table of container images: what the product defaults to and what the tests run.

Every image has a recipe, `images/<name>/Dockerfile` (the operator's own is
`operator/Dockerfile`), that starts `ARG BASE=debian:<suite>-slim` and `FROM ${BASE}`: with
Docker Hub the file builds as it is; here, where no registry answers, hack/imagebuild makes the
base from Debian's packages with mmdebstrap and passes `--build-arg BASE=<that base>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The operator image; the keepalived image is built on it (the agent sidecar needs both).
OPERATOR = "hakeeper"


@dataclass(frozen=True)
class Base:
    """A Debian root filesystem made by mmdebstrap, imported into docker as `tag`.

    `default` is the image the recipes name in `ARG BASE=` (what a user with Docker Hub gets).
    """

    suite: str
    sources: tuple[str, ...]
    default: str
    tag_repository: str = "hakeeper-base/debian"


@dataclass(frozen=True)
class Image:
    """One image: its reference (the name pods use), its recipe and what goes into its hash.

    recipe:  directory of the Dockerfile (relative to the repository root); its files are
             hashed and, unless `context` says otherwise, it is the build context.
    context: build context relative to the repository root (None: the recipe directory).
    inputs:  for a context other than the recipe directory, the glob patterns (relative to the
             repository root) of the files that the Dockerfile copies: they make the hash.
    base:    a key of BASES, or "image:<name>" for an image of this table.
    binary:  a Go program built from hack/<binary>/go.mod and put into the context as
             ./<binary> before the build.
    go_package: the main package of `binary`, which is also the module whose required version
             names the cached build (default github.com/<binary>/<binary>).
    node:    an image of the node itself (sandbox, cluster DNS), not of the product or tests:
             kind brings its own, so hack/e2e-kind.sh does not load it.
    """

    name: str
    reference: str
    recipe: str
    base: str = "bookworm"
    context: str | None = None
    dockerfile: str = "Dockerfile"
    inputs: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    binary: str | None = None
    go_package: str | None = None
    node: bool = False

    @property
    def context_dir(self) -> str:
        return self.context or self.recipe

    @property
    def go_main(self) -> str:
        """The Go package `go build` builds for `binary`."""
        return self.go_package or f"github.com/{self.binary}/{self.binary}"


MIRROR = "http://deb.debian.org/debian"
BASES: dict[str, Base] = {
    "bookworm": Base("bookworm", (f"deb {MIRROR} bookworm main", f"deb {MIRROR} bookworm-updates main",
                                  "deb http://deb.debian.org/debian-security bookworm-security main"),
                     default="debian:bookworm-slim"),
    # MySQL: bookworm has no mysql-server; sid has 9.x
    "sid": Base("sid", (f"deb {MIRROR} sid main",), default="debian:sid-slim"),
}

IMAGES: tuple[Image, ...] = (
    Image("pause", "ghcr.io/hakeeper/pause:1", "images/pause", node=True),
    Image("coredns", "ghcr.io/hakeeper/coredns:1.15.0", "images/coredns", binary="coredns", node=True),
    Image(OPERATOR, "ghcr.io/hakeeper/hakeeper:0.1.0", "operator", context=".",
          inputs=(".dockerignore", "pyproject.toml", "operator/**")),
    Image("haproxy", "ghcr.io/hakeeper/haproxy:2.6", "images/haproxy"),
    Image("keepalived", "ghcr.io/hakeeper/keepalived:2.2.7", "images/keepalived", base=f"image:{OPERATOR}"),
    Image("mariadb", "ghcr.io/hakeeper/mariadb:10.11", "images/mariadb"),
    Image("mysql", "ghcr.io/hakeeper/mysql:9.7", "images/mysql", base="sid"),
    Image("prometheus", "ghcr.io/hakeeper/prometheus:2.42", "images/prometheus"),
    Image("alertmanager", "ghcr.io/hakeeper/alertmanager:0.25", "images/alertmanager"),
    Image("test-http-backend", "ghcr.io/hakeeper/test-http-backend:1", "images/test-http-backend"),
    # engine dns's e2e: ExternalDNS publishing the pools' DNSEndpoints into BIND by RFC 2136
    Image("external-dns", "ghcr.io/hakeeper/external-dns:0.22.0", "images/external-dns", binary="external-dns",
          go_package="sigs.k8s.io/external-dns"),
    Image("bind9", "ghcr.io/hakeeper/bind9:9.18", "images/bind9"),
)


def by_name(images: tuple[Image, ...] = IMAGES) -> dict[str, Image]:
    return {image.name: image for image in images}

"""The Go programs hack/imagebuild builds into images (CoreDNS, ExternalDNS): the version each
image is built from is the one its wrapper module pins, and the image's tag says it."""

from __future__ import annotations

import pytest

from imagebuild.builder import ImageBuildError, binary_version
from imagebuild.table import IMAGES, Image

BINARIES = [image for image in IMAGES if image.binary]


@pytest.mark.parametrize("image", BINARIES, ids=lambda i: i.name)
def test_the_tag_is_the_pinned_module_version(image: Image) -> None:
    version = binary_version(image.binary or "", image.go_main)
    assert image.reference.endswith(":" + version.removeprefix("v")), (image.reference, version)


def test_the_main_package_and_its_module():
    by_name = {image.name: image for image in BINARIES}
    assert by_name["coredns"].go_main == "github.com/coredns/coredns"  # the default
    assert by_name["external-dns"].go_main == "sigs.k8s.io/external-dns"
    assert binary_version("external-dns", "sigs.k8s.io/external-dns") == "v0.22.0"


def test_a_module_the_wrapper_does_not_require_is_an_error():
    with pytest.raises(ImageBuildError, match="requires no example.com/absent"):
        binary_version("external-dns", "example.com/absent")

"""Container images of hakeeper: one table (table.py), cached builds, loading into containerd.

    PYTHONPATH=hack python -m imagebuild build [NAME...]        # cached in ~/.cache/hakeeper/images
    PYTHONPATH=hack python -m imagebuild load --address SOCK [NAME...]
    PYTHONPATH=hack python -m imagebuild list

From Python (the e2e fixture): imagebuild.build(names=None) -> {name: tar path},
imagebuild.load(address, names=None) -> {name: reference}; both raise ImageBuildError.
"""

from .builder import ImageBuildError, Result, build, build_all, image_hash, images_dir
from .containerd import load
from .table import BASES, IMAGES, Base, Image, by_name

__all__ = ["BASES", "IMAGES", "Base", "Image", "ImageBuildError", "Result", "build", "build_all", "by_name",
           "image_hash", "images_dir", "load"]

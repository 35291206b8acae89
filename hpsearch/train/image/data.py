"""Image data: the bundled digits as images, or a folder of class subfolders, decoded once.

Every image is decoded, resized (shorter side) and center-cropped to a square once, through
timm's evaluation transform, and kept as a uint8 tensor ``[N, 3, size, size]``; training and
evaluation read those tensors, so an epoch decodes no files. The train/validation split is
stratified by class with a fixed seed (0), so every trial of a study scores on the same images.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform

from hpsearch.data_roots import check_member
from hpsearch.errors import TaskError
from hpsearch.train.core.splits import TensorSplit, split_rows

__all__ = ["ImageData", "ImageSource", "ImageSplit", "load_images", "open_image_source"]


@dataclass(frozen=True)
class ImageSource:
    """Where a dataset's images come from, before anything is decoded."""

    dataset: str  # ``digits`` or a folder path, as the task names it
    classes: tuple[str, ...]
    targets: tuple[int, ...]  # the class index of every image
    paths: tuple[tuple[str, int, int], ...]  # (path, mtime_ns, size) per image; empty for digits

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class ImageSplit(TensorSplit):
    """Decoded images (uint8 ``[N, 3, H, W]``) and their class indices (int64 ``[N]``)."""


@dataclass(frozen=True)
class ImageData:
    train: ImageSplit
    val: ImageSplit
    classes: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def open_image_source(dataset: str) -> ImageSource:
    """Find the images and classes of ``dataset`` (``digits`` or an ImageFolder-layout folder).

    Reads no image yet, so the number of classes is known before the model is built. Raises
    ``ValueError`` naming the dataset when it is neither.
    """
    if dataset == "digits":
        from sklearn.datasets import load_digits

        targets = load_digits().target
        return ImageSource(
            dataset=dataset,
            classes=tuple(str(c) for c in range(10)),
            targets=tuple(int(t) for t in targets),
            paths=(),
        )
    from torchvision.datasets import ImageFolder

    root = Path(dataset).expanduser()
    if not root.is_dir():
        raise TaskError(
            f"task.dataset {dataset!r} is neither 'digits' nor a folder on this machine: give a "
            "folder with one subfolder of images per class (torchvision ImageFolder layout)"
        )
    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, OSError):
        # torchvision's message lists the folder's entries: say what is wrong without them.
        raise TaskError(
            f"task.dataset {dataset!r} is not an image folder: it needs one subfolder of "
            "images (.png, .jpg, ...) per class"
        ) from None
    paths = []
    for path, _ in folder.samples:
        check_member(path, field="task.dataset", named=dataset)  # a symlink out of the roots
        stat = os.stat(path)
        paths.append((path, stat.st_mtime_ns, stat.st_size))
    return ImageSource(
        dataset=dataset,
        classes=tuple(folder.classes),
        targets=tuple(folder.targets),
        paths=tuple(paths),
    )


def load_images(
    source: ImageSource, *, image_size: int, val_fraction: float, interpolation: str = "bicubic"
) -> ImageData:
    """Decode ``source`` at ``image_size`` and split it, stratified, into train and validation.

    Cached per (source, size, fraction, interpolation): the trials of a study on one worker
    decode once. A changed file changes the source, so it is decoded again.
    """
    return _load_images(source, image_size, val_fraction, interpolation)


@functools.lru_cache(maxsize=2)
def _load_images(
    source: ImageSource, image_size: int, val_fraction: float, interpolation: str
) -> ImageData:
    y = np.asarray(source.targets, dtype=np.int64)
    counts = np.bincount(y, minlength=source.n_classes)
    if counts.min() < 2:
        thin = len(np.flatnonzero(counts < 2))
        raise TaskError(
            f"task.dataset {source.dataset!r}: {thin} class folder(s) have fewer than 2 images; "
            "a stratified train/validation split needs at least 2 per class"
        )
    # timm's eval transform without normalization gives uint8 tensors: resize the shorter
    # side, then center-crop (crop_pct=1 keeps the whole short side).
    resize = create_transform(
        (3, image_size, image_size),
        is_training=False,
        interpolation=interpolation,
        crop_pct=1.0,
        normalize=False,
    )
    x = torch.stack([resize(image) for image in _images(source)])
    train_idx, val_idx = split_rows(
        y,
        val_fraction,
        stratify=True,
        what=f"task.dataset {source.dataset!r} cannot be split with "
        f"task.val_fraction={val_fraction}",
    )
    y_t = torch.from_numpy(y)
    train_i, val_i = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
    return ImageData(
        train=ImageSplit(x=x[train_i], y=y_t[train_i]),
        val=ImageSplit(x=x[val_i], y=y_t[val_i]),
        classes=source.classes,
    )


def _images(source: ImageSource):
    if source.dataset == "digits":
        from sklearn.datasets import load_digits

        # 0..16 gray levels -> 0..255, one channel repeated into three.
        pixels = np.rint(load_digits().images * (255.0 / 16.0)).astype(np.uint8)
        for image in pixels:
            yield Image.fromarray(image).convert("RGB")
        return
    for i, (path, _, _) in enumerate(source.paths):
        try:
            with Image.open(path) as image:
                yield image.convert("RGB")
        except OSError as e:
            where = os.path.relpath(path, Path(source.dataset).expanduser())
            raise TaskError(
                f"task.dataset {source.dataset!r}: cannot read image {where!r} (file {i + 1} of "
                f"{len(source.paths)}; {type(e).__name__}): replace or remove it"
            ) from e

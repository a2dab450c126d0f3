"""Reference statistics from files: a folder of images, or an ``.npz`` of statistics or features.

* a folder of images (PNG, JPEG, ...): read in file-name order, converted to the model space
  ``[-1, 1]`` and put through the extractor (optionally cached, :func:`reference_stats`);
* an ``.npz`` holding ``mu`` and ``sigma`` (pytorch-fid, guided-diffusion), lcsc's own
  ``mean``/``cov``/``n`` (:meth:`FeatureStats.save`), or raw features ``(N, D)`` under ``features``
  or the key you name.

Every error names the file or the key at fault.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lcsc.errors import LcscError
from lcsc.metrics.frechet import FeatureStats, read_npz
from lcsc.metrics.reference import compute_features, reference_stats

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_MODES = {1: "L", 3: "RGB"}


def read_image_files(folder: str | os.PathLike[str], mode: str | None = None) -> np.ndarray:
    """The images in ``folder`` (not its subfolders), sorted by name, as uint8 ``(N, H, W)``
    for ``mode`` ``"L"`` (grey) or ``(N, H, W, 3)`` for ``"RGB"``; ``None`` takes ``"L"`` when
    the first image is grey, else ``"RGB"``.

    All images must have one size: a reference is not resized behind your back.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LcscError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    arrays: list[np.ndarray] = []
    for f in files:
        try:
            with Image.open(f) as im:
                if mode is None:
                    mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                a = np.asarray(im.convert(mode), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise LcscError(f"{f}: unreadable image: {exc}") from exc
        if arrays and a.shape != arrays[0].shape:
            raise LcscError(
                f"{f}: image size {a.shape[1]}x{a.shape[0]} differs from"
                f" {arrays[0].shape[1]}x{arrays[0].shape[0]} of {files[0].name}"
            )
        arrays.append(a)
    return np.stack(arrays)


def load_images(folder: str | os.PathLike[str], channels: int = 3) -> torch.Tensor:
    """The images of :func:`read_image_files` as float32 ``(N, channels, H, W)`` in ``[-1, 1]``
    (``pixel / 127.5 - 1``); ``channels`` is 1 (grey) or 3."""
    if channels not in _MODES:
        raise LcscError(f"images can be read with 1 or 3 channels, not {channels}")
    a = read_image_files(folder, _MODES[channels])
    x = torch.from_numpy(a.reshape(*a.shape[:3], channels)).permute(0, 3, 1, 2)
    return x.to(torch.float32) / 127.5 - 1.0


def stats_from_npz(path: str | os.PathLike[str], key: str | None = None) -> FeatureStats:
    """Feature statistics from an ``.npz``: raw features ``(N, D)`` under ``key`` if given,
    else ``mean``/``cov`` (lcsc), ``mu``/``sigma`` (pytorch-fid; ``n`` is 0 when not stored), or
    raw features under ``features``. Read with ``allow_pickle=False``."""
    p = Path(path)
    data = read_npz(p, "reference file")
    found = ", ".join(sorted(data)) or "nothing"
    if key:
        if key not in data:
            raise LcscError(f"{p}: no array {key!r} (found: {found})")
        return _features(p, key, data[key])
    for m, s in (("mean", "cov"), ("mu", "sigma")):
        if m in data and s in data:
            n = int(data["n"]) if "n" in data and data["n"].ndim == 0 else 0
            try:
                return FeatureStats(data[m], data[s], n)
            except LcscError as exc:
                raise LcscError(f"{p}: arrays {m!r}/{s!r}: {exc}") from exc
    if "features" in data:
        return _features(p, "features", data["features"])
    raise LcscError(
        f"{p}: expected arrays mu and sigma, mean and cov, or features (N, D) (found: {found});"
        " name the array of raw features with reference_key"
    )


def _features(path: Path, key: str, a: np.ndarray) -> FeatureStats:
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise LcscError(f"{path}: array {key!r} must be numeric features (N, D), got {a.shape}")
    try:
        return FeatureStats.from_features(a)
    except LcscError as exc:
        raise LcscError(f"{path}: array {key!r}: {exc}") from exc


def load_reference(
    path: str | os.PathLike[str],
    extractor: nn.Module,
    key: str | None = None,
    channels: int = 3,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> FeatureStats:
    """Reference statistics from ``path``: an ``.npz`` (:func:`stats_from_npz`, ``key``), or a
    folder of images (:func:`load_images` with ``channels``) put through ``extractor``, cached
    in ``cache_dir`` when given (:func:`lcsc.metrics.reference_stats`)."""
    p = Path(path)
    if p.is_dir():
        images = load_images(p, channels)
        if cache_dir:
            # The cache file is named after the folder; its hash covers the images themselves.
            name = re.sub(r"[^A-Za-z0-9._+-]", "_", p.resolve().name).lstrip("._+-") or "images"
            return reference_stats(name, images, extractor, cache_dir, None, batch_size, device)
        feats = compute_features(extractor, images, batch_size, device)
        return FeatureStats.from_features(feats)
    if p.suffix != ".npz":
        raise LcscError(f"{p}: a reference is a folder of images or an .npz file")
    return stats_from_npz(p, key)

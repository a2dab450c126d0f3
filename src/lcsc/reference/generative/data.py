"""Training data as float tensors in model space ``[-1, 1]``, and the way back.

A :class:`DataSpec` records where the data came from, its per-sample shape in model space
``(C, H, W)`` (or ``(D,)`` for vectors), its original value range ``[low, high]`` and layout, and
the fixed train/test split, so that the test part can be reloaded from a checkpoint's metadata
alone. The map to model space is affine::

    x = 2 (v - low) / (high - low) - 1        (digits: low=0, high=16, so x = v / 8 - 1)

Sources:

* ``"digits"``: scikit-learn's bundled ``load_digits`` (1797 images, 8x8, values 0..16);
  no download.
* ``PATH.npz``: the array under key ``x`` (or the file's only array) of images
  ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in 1, 3, 4, or of vectors
  ``(N, D)``; uint8 (range 0..255) or floats (range [0, 1] or [-1, 1] if the values fit, else
  their min..max).
* a folder of images (read with Pillow, all the same size; grayscale if the first image is).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lcsc.config import Config, boolean, integer, integers, real
from lcsc.errors import LcscError

SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class DataSpec(Config):
    """Where a dataset comes from and how model space maps back to its original units.

    Attributes:
        name: ``"digits"``, or the resolved path of the ``.npz`` file or image folder.
        shape: shape of one sample in model space, channels first: ``(C, H, W)`` or ``(D,)``.
        low, high: the original value range, mapped to ``[-1, 1]``.
        original_shape: shape of one sample in original units (``(8, 8)`` for digits).
        channels_last: whether the original layout is ``(H, W, C)``.
        test_fraction: fraction of the samples held out as the test split.
        split_seed: seed of the fixed train/test permutation.
    """

    name: str
    shape: tuple[int, ...]
    low: float
    high: float
    original_shape: tuple[int, ...]
    channels_last: bool = False
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        self.check("shape", integers, 1)
        self.check("original_shape", integers, 1)
        self.check("low", real)
        self.check("high", real)
        self.require(self.high > self.low, "high", f"must exceed low {self.low}", self.high)
        self.check("channels_last", boolean)
        self.check("test_fraction", real, 0.0, below=1.0)
        self.check("split_seed", integer, 0)
        same = math.prod(self.shape) == math.prod(self.original_shape)
        msg = f"must hold as many values as original_shape {self.original_shape}"
        self.require(same, "shape", msg, self.shape)


@dataclass(frozen=True)
class Dataset:
    """Samples ``x`` (N, *spec.shape), float32 in ``[-1, 1]``, their :class:`DataSpec`, and
    class labels ``y`` (N,) where the source has them (digits)."""

    x: torch.Tensor
    spec: DataSpec
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


def to_model_space(v: np.ndarray | torch.Tensor, spec: DataSpec) -> torch.Tensor:
    """Original values (N, *original_shape) -> float32 (N, *spec.shape) in ``[-1, 1]``."""
    t = torch.as_tensor(np.asarray(v), dtype=torch.float32)
    n = t.shape[0]
    if spec.channels_last:
        t = t.reshape(n, *spec.original_shape).movedim(-1, 1)
    t = t.reshape(n, *spec.shape)
    return (t - spec.low) * (2.0 / (spec.high - spec.low)) - 1.0


def to_original_units(x: torch.Tensor | np.ndarray, spec: DataSpec) -> np.ndarray:
    """Model-space samples (N, *spec.shape) -> float32 (N, *original_shape) in ``[low, high]``.

    Inverse of :func:`to_model_space`, ``v = low + (x + 1) (high - low) / 2``, clipped to the
    original range (digits: (N, 8, 8) on the 0..16 scale).
    """
    t = torch.as_tensor(x).detach().to("cpu", torch.float32)
    n = t.shape[0]
    if tuple(t.shape[1:]) != spec.shape:
        raise LcscError(f"samples have shape {tuple(t.shape[1:])}, the data {spec.shape}")
    v = (t + 1.0) * ((spec.high - spec.low) / 2.0) + spec.low
    v = v.clamp(spec.low, spec.high)
    if spec.channels_last:
        v = v.movedim(1, -1)
    return v.reshape(n, *spec.original_shape).numpy()


def load_dataset(
    source: str | os.PathLike[str],
    split: str = "train",
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """Load ``source`` (``"digits"``, a ``.npz`` file or an image folder) and take ``split``.

    The split is fixed by ``split_seed``: for labelled data (digits) it is stratified by class
    (:func:`lcsc.reference.digits.data.stratified_split`, the split the packaged feature nets were
    trained on); otherwise the first ``round(N * test_fraction)`` samples of a permutation are
    the test part, the rest the training part.
    """
    if split not in SPLITS:
        raise LcscError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    real("test_fraction", test_fraction, 0.0, below=1.0)
    labels = None
    if str(source) == "digits":
        values, labels, spec = _digits()
    else:
        path = Path(source)
        if not path.exists():
            raise LcscError(f"{source}: no such dataset (expected 'digits', a .npz or a folder)")
        if path.is_dir():
            values, spec = _image_folder(path)
        elif path.suffix == ".npz":
            values, spec = _npz(path)
        else:
            raise LcscError(f"{source}: unsupported dataset (expected a .npz file or a folder)")
    spec = DataSpec(**{**spec.to_dict(), "test_fraction": test_fraction, "split_seed": split_seed})
    return _take_split(values, spec, split, labels)


def load_from_spec(spec: DataSpec, split: str = "test") -> Dataset:
    """Reload the dataset a :class:`DataSpec` (e.g. from a checkpoint's metadata) describes."""
    data = load_dataset(
        spec.name, split, test_fraction=spec.test_fraction, split_seed=spec.split_seed
    )
    if data.spec.shape != spec.shape:
        raise LcscError(f"{spec.name}: samples now have shape {data.spec.shape}, not {spec.shape}")
    return Dataset(data.x, spec, data.y)


def _take_split(
    values: np.ndarray, spec: DataSpec, split: str, labels: np.ndarray | None
) -> Dataset:
    n = values.shape[0]
    if split == "all":
        order = np.arange(n)
    elif labels is not None and spec.test_fraction > 0:
        from lcsc.reference.digits.data import stratified_split

        train, test = stratified_split(labels, spec.test_fraction, spec.split_seed)
        order = train if split == "train" else test
    else:
        perm = np.random.default_rng(spec.split_seed).permutation(n)
        n_test = int(round(n * spec.test_fraction))
        order = np.sort(perm[n_test:] if split == "train" else perm[:n_test])
    if order.size == 0:
        raise LcscError(f"{spec.name}: the {split} split is empty ({n} samples)")
    y = None if labels is None else torch.from_numpy(labels[order])
    return Dataset(to_model_space(values[order], spec), spec, y)


def _digits() -> tuple[np.ndarray, np.ndarray, DataSpec]:
    from lcsc.reference.digits.data import digits_images

    images, labels = digits_images()  # (1797, 8, 8) and (1797,), bundled with sklearn
    return images, labels, DataSpec("digits", (1, 8, 8), 0.0, 16.0, (8, 8))


def _npz(path: Path) -> tuple[np.ndarray, DataSpec]:
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = list(f.keys())
            if "x" in keys:
                arr = f["x"]
            elif len(keys) == 1:
                arr = f[keys[0]]
            else:
                raise LcscError(
                    f"{path}: holds arrays {', '.join(keys)}; expected key 'x' or a single array"
                )
    except LcscError:
        raise
    except (OSError, ValueError) as exc:
        raise LcscError(f"{path}: unreadable .npz file: {exc}") from exc
    return arr, _spec_for_array(arr, str(path.resolve()), path)


def _spec_for_array(arr: np.ndarray, name: str, where: Path) -> DataSpec:
    if arr.dtype == np.uint8:
        low, high = 0.0, 255.0
    elif np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise LcscError(f"{where}: the data is empty or holds NaN/Inf values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            low, high = 0.0, 1.0
        elif lo >= -1.0 and hi <= 1.0:
            low, high = -1.0, 1.0
        elif hi > lo:
            low, high = lo, hi
        else:
            raise LcscError(f"{where}: all values are equal ({lo}); nothing to learn")
    else:
        raise LcscError(f"{where}: unsupported dtype {arr.dtype}")
    shape = arr.shape[1:]
    if arr.ndim == 2:  # vectors
        return DataSpec(name, shape, low, high, shape)
    if arr.ndim == 3:  # (N, H, W) grayscale
        return DataSpec(name, (1, *shape), low, high, shape)
    if arr.ndim == 4 and shape[-1] in (1, 3, 4):
        h, w, c = shape
        return DataSpec(name, (c, h, w), low, high, shape, channels_last=True)
    if arr.ndim == 4 and shape[0] in (1, 3, 4):
        return DataSpec(name, shape, low, high, shape)
    raise LcscError(
        f"{where}: array of shape {arr.shape} is neither (N, D), (N, H, W), (N, H, W, C) nor"
        " (N, C, H, W) with C in 1, 3, 4"
    )


def _image_folder(path: Path) -> tuple[np.ndarray, DataSpec]:
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise LcscError(
            f"{path}: reading an image folder needs Pillow (pip install pillow)"
        ) from exc
    from lcsc.metrics.reference_files import read_image_files

    arr = read_image_files(path)  # (N, H, W) or (N, H, W, 3)
    return arr, _spec_for_array(arr, str(path.resolve()), path)

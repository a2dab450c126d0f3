from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lcsc.errors import LcscError
from lcsc.reference.digits.data import load_digits_split
from lcsc.reference.generative import DataSpec, load_dataset, load_from_spec, to_original_units


def test_digits_split_and_scaling() -> None:
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    # scikit-learn's stratified split rounds the test part up (the feature nets' split).
    assert len(train) + len(test) == 1797 and len(test) == math.ceil(1797 * 0.2)
    assert train.x.shape[1:] == (1, 8, 8) and train.x.dtype == torch.float32
    assert float(train.x.min()) == -1.0 and float(train.x.max()) == 1.0
    images = load_digits().images
    everything = load_dataset("digits", "all").x
    assert torch.equal(everything[:, 0], torch.tensor(images / 8.0 - 1.0, dtype=torch.float32))

    # Train and test partition the data set (as multisets of images).
    def rows(x: torch.Tensor) -> Counter:
        return Counter(tuple(r) for r in x.flatten(1).tolist())

    assert rows(train.x) + rows(test.x) == rows(everything)
    assert torch.equal(load_from_spec(test.spec, "test").x, test.x)  # fixed split
    # One split: the generators' test part is the packaged feature nets' test part.
    _, _, nets_test, nets_labels = load_digits_split()
    assert torch.equal(test.x.flatten(1), nets_test) and torch.equal(test.y, nets_labels)
    per_class = np.bincount(load_digits().target)  # stratified: each class keeps its share
    assert np.all(np.abs(torch.bincount(test.y).numpy() - 0.2 * per_class) <= 1)


def test_to_original_units_digits() -> None:
    data = load_dataset("digits", "all")
    back = to_original_units(data.x[:10], data.spec)
    assert back.shape == (10, 8, 8)
    np.testing.assert_allclose(back, load_digits().images[:10], atol=1e-6)
    wild = to_original_units(torch.full((2, 1, 8, 8), 3.0), data.spec)
    assert wild.max() == 16.0  # clipped to the original range
    assert to_original_units(torch.full((2, 1, 8, 8), -3.0), data.spec).min() == 0.0


def test_npz_uint8_channels_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "imgs.npz", x=images, labels=np.arange(20))
    data = load_dataset(tmp_path / "imgs.npz", "all")
    assert data.x.shape == (20, 3, 4, 4) and data.spec.channels_last
    assert (data.spec.low, data.spec.high) == (0.0, 255.0)
    np.testing.assert_allclose(to_original_units(data.x, data.spec), images, atol=1e-4)


def test_npz_single_float_array_and_vectors(tmp_path: Path) -> None:
    vectors = np.random.default_rng(1).normal(size=(30, 2)).astype(np.float32) * 3
    np.savez(tmp_path / "v.npz", vectors)
    data = load_dataset(tmp_path / "v.npz", "train", test_fraction=0.1)
    assert data.x.shape == (27, 2) and data.spec.shape == (2,)
    assert data.spec.low == float(vectors.min()) and data.spec.high == float(vectors.max())
    gray = np.random.default_rng(2).random((10, 8, 8))  # floats in [0, 1]
    np.savez(tmp_path / "g.npz", x=gray)
    data = load_dataset(tmp_path / "g.npz", "all")
    assert data.x.shape == (10, 1, 8, 8) and (data.spec.low, data.spec.high) == (0.0, 1.0)


def test_image_folder(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, size=(8, 8), dtype=np.uint8) for _ in range(5)]
    for i, a in enumerate(arrays):
        pil.fromarray(a).save(tmp_path / f"{i}.png")
    data = load_dataset(tmp_path, "all")
    assert data.x.shape == (5, 1, 8, 8) and data.spec.original_shape == (8, 8)
    np.testing.assert_allclose(to_original_units(data.x, data.spec), np.stack(arrays), atol=1e-4)
    pil.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "9.png")
    with pytest.raises(LcscError, match=r"9\.png"):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"a": np.zeros((3, 4)), "b": np.zeros(3)}, "expected key 'x'"),
        ({"x": np.zeros((3, 2, 5, 5, 5))}, "neither"),
        ({"x": np.full((3, 4), np.nan)}, "NaN"),
    ],
)
def test_bad_npz(tmp_path: Path, arrays: dict, match: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(LcscError, match=match):
        load_dataset(tmp_path / "bad.npz")


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="nope.npz"):
        load_dataset(tmp_path / "nope.npz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(LcscError, match="unsupported"):
        load_dataset(tmp_path / "x.txt")
    with pytest.raises(LcscError, match="split"):
        load_dataset("digits", "validation")


def test_spec_round_trip() -> None:
    spec = load_dataset("digits").spec
    assert DataSpec.from_dict(spec.to_dict()) == spec


def test_missing_pillow_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(LcscError, match="needs Pillow"):
        load_dataset(tmp_path)

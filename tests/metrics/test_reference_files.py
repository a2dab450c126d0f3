"""Reference statistics from a folder of images or an .npz, with errors naming the file or key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lcsc.errors import LcscError
from lcsc.metrics import (
    FeatureStats,
    compute_features,
    load_images,
    load_reference,
    reference_cache_path,
    stats_from_npz,
)


def _write_images(folder: Path, arrays: list[np.ndarray]) -> None:
    folder.mkdir()
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"img{i:02d}.png")


def test_image_folder_in_model_space(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(3)]
    _write_images(tmp_path / "rgb", rgb)
    (tmp_path / "rgb" / "notes.txt").write_text("not an image")
    x = load_images(tmp_path / "rgb")
    assert x.shape == (3, 3, 5, 7) and x.dtype == torch.float32
    want = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).double() / 127.5 - 1
    torch.testing.assert_close(x.double(), want)
    grey = load_images(tmp_path / "rgb", channels=1)  # PIL's ITU-R 601 luma
    luma = np.array([np.asarray(Image.fromarray(a).convert("L")) for a in rgb])
    torch.testing.assert_close(grey[:, 0].double(), torch.from_numpy(luma).double() / 127.5 - 1)


def test_image_folder_errors(tmp_path: Path) -> None:
    _write_images(tmp_path / "mixed", [np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)])
    with pytest.raises(LcscError, match=r"img01.png: image size 5x4 differs from 4x4 of img00"):
        load_images(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LcscError, match=r"empty: no image files"):
        load_images(tmp_path / "empty")
    _write_images(tmp_path / "broken", [np.zeros((4, 4), np.uint8)])
    (tmp_path / "broken" / "img01.png").write_bytes(b"not a png")
    with pytest.raises(LcscError, match=r"img01.png: unreadable image"):
        load_images(tmp_path / "broken")
    with pytest.raises(LcscError, match="1 or 3 channels"):
        load_images(tmp_path / "mixed", channels=4)


def test_npz_flavours(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(50, 3))
    mean, cov = feats.mean(0), np.cov(feats, rowvar=False)
    np.savez(tmp_path / "fid.npz", mu=mean, sigma=cov)  # pytorch-fid's keys
    np.savez(tmp_path / "raw.npz", features=feats)
    np.savez(tmp_path / "mine.npz", images=np.zeros((2, 2)), f=feats)
    FeatureStats.from_features(feats).save(tmp_path / "lcsc.npz")
    for name, key, n in (
        ("fid", None, 0),
        ("raw", None, 50),
        ("mine", "f", 50),
        ("lcsc", None, 50),
    ):
        s = stats_from_npz(tmp_path / f"{name}.npz", key)
        np.testing.assert_allclose(s.mean, mean, rtol=1e-12)
        np.testing.assert_allclose(s.cov, cov, rtol=1e-12)
        assert s.n == n


def test_npz_errors_name_file_and_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", images=np.zeros((4, 2)), labels=np.zeros(4))
    path = tmp_path / "a.npz"
    with pytest.raises(LcscError, match=r"a.npz: no array 'feats' \(found: images, labels\)"):
        stats_from_npz(path, "feats")
    with pytest.raises(LcscError, match=r"a.npz: expected arrays mu and sigma.*images, labels"):
        stats_from_npz(path)
    with pytest.raises(LcscError, match=r"a.npz: array 'labels' must be numeric features \(N, D\)"):
        stats_from_npz(path, "labels")
    np.savez(tmp_path / "b.npz", mu=np.zeros(3), sigma=np.eye(2))
    with pytest.raises(LcscError, match=r"b.npz: arrays 'mu'/'sigma': .*do not match"):
        stats_from_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", features=np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(LcscError, match=r"c.npz: array 'features': features are not finite"):
        stats_from_npz(tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(LcscError, match=r"d.npz: unreadable or corrupt reference file"):
        stats_from_npz(tmp_path / "d.npz")
    with pytest.raises(LcscError, match=r"e.npz: no such reference file"):
        stats_from_npz(tmp_path / "e.npz")
    with pytest.raises(LcscError, match=r"f.txt: a reference is a folder of images or an .npz"):
        load_reference(tmp_path / "f.txt", torch.nn.Identity())


def test_reference_from_a_folder_through_an_extractor(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    _write_images(
        tmp_path / "ref", [rng.integers(0, 256, (3, 3), dtype=np.uint8) for _ in range(8)]
    )
    net = torch.nn.Flatten()
    images = load_images(tmp_path / "ref", channels=1)
    want = FeatureStats.from_features(compute_features(net, images))
    got = load_reference(tmp_path / "ref", net, channels=1)
    np.testing.assert_allclose(got.mean, want.mean) and np.testing.assert_allclose(
        got.cov, want.cov
    )
    cached = load_reference(tmp_path / "ref", net, channels=1, cache_dir=tmp_path / "cache")
    assert reference_cache_path(tmp_path / "cache", "ref", net, images).is_file()
    np.testing.assert_allclose(cached.cov, want.cov)

"""Batched feature extraction and the reference-statistics cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lcsc.errors import LcscError
from lcsc.metrics import (
    FeatureStats,
    compute_features,
    compute_features_and_logits,
    extractor_fingerprint,
    reference_cache_path,
    reference_stats,
)


class Counting(nn.Module):
    """A user extractor (N, 6) -> (N, 4) that counts its calls, with dropout to test eval mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(6, 4)
        self.drop = nn.Dropout(0.5)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.drop(self.lin(x))


def _samples(n: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))


def test_batched_equals_single_pass_and_reports_progress() -> None:
    net, x = Counting(), _samples()
    seen: list[tuple[int, int]] = []
    batched = compute_features(
        net, x, batch_size=16, progress=lambda stage, d, t: seen.append((d, t))
    )
    whole = compute_features(net, x, batch_size=1000)
    assert batched.shape == (50, 4) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, whole, rtol=1e-6)
    assert seen == [(16, 50), (32, 50), (48, 50), (50, 50)]
    with torch.no_grad():
        np.testing.assert_allclose(batched, net.lin(x).double().numpy(), rtol=1e-6)  # dropout off


def test_modes_restored_and_no_grad() -> None:
    net = Counting()
    net.train()
    net.lin.eval()  # a mixed state must come back as it was
    grads: list[bool] = []
    net.register_forward_hook(lambda m, i, o: grads.append(o.requires_grad))
    compute_features(net, _samples(4))
    assert net.training and not net.lin.training and net.drop.training
    assert grads == [False]


def test_any_module_output_layout_and_input_types() -> None:
    x = _samples(10)
    pooled = nn.Sequential(nn.Unflatten(1, (6, 1, 1)))  # (N, 6, 1, 1) like pooled conv maps
    np.testing.assert_allclose(compute_features(pooled, x), x.numpy(), rtol=1e-6)

    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2, x

    np.testing.assert_allclose(compute_features(Pair(), x.numpy()), 2 * x.numpy(), rtol=1e-6)

    class SeesDtype(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.dtype == torch.uint8
            return x.float().flatten(1)

    assert compute_features(SeesDtype(), np.zeros((3, 2, 2), np.uint8)).shape == (3, 4)
    double = nn.Linear(6, 2).double()  # floating samples follow the extractor's dtype
    assert compute_features(double, x).shape == (10, 2)


def test_non_finite_features_raise() -> None:
    x = _samples(8)
    x[3, 0] = float("nan")
    with pytest.raises(LcscError, match="features are not finite: 1 of 8"):
        compute_features(nn.Linear(6, 2), x)


def test_features_and_logits() -> None:
    class Both(nn.Module):
        def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, :2], x[:, 2:]

    f, z = compute_features_and_logits(Both(), _samples(5), batch_size=2)
    assert f.shape == (5, 2) and z.shape == (5, 4)
    with pytest.raises(LcscError, match="no features_and_logits"):
        compute_features_and_logits(nn.Identity(), _samples(5))


def test_reference_stats_computed_once_then_cached(tmp_path: Path) -> None:
    net, x = Counting(), _samples(40)
    progress: list[tuple[int, int]] = []
    first = reference_stats(
        "toy", x, net, tmp_path, batch_size=32, progress=lambda stage, d, t: progress.append((d, t))
    )
    assert net.calls == 2 and progress[-1] == (40, 40)
    path = reference_cache_path(tmp_path, "toy", net, x)
    assert (
        path.parent == tmp_path and path.name.startswith("toy-Counting-") and path.suffix == ".npz"
    )
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written atomically, no temp file
    meta = FeatureStats.load_metadata(path)
    assert meta["dataset"] == "toy" and meta["extractor_sha256"] == extractor_fingerprint(net)

    progress.clear()
    again = reference_stats(
        "toy", x, net, tmp_path, progress=lambda stage, d, t: progress.append((d, t))
    )
    assert net.calls == 2 and progress == []  # cache hit: nothing computed
    np.testing.assert_array_equal(again.cov, first.cov)
    expected = FeatureStats.from_features(compute_features(net, x))
    np.testing.assert_allclose(first.mean, expected.mean, rtol=1e-12)


def test_cache_key_covers_weights_samples_and_name(tmp_path: Path) -> None:
    net, x = Counting(), _samples(20)
    base = reference_cache_path(tmp_path, "toy", net, x)
    assert reference_cache_path(tmp_path, "toy", net, x.clone()) == base
    assert reference_cache_path(tmp_path, "toy", net, _samples(20, seed=1)) != base
    assert reference_cache_path(tmp_path, "other", net, x) != base
    assert reference_cache_path(tmp_path, "toy", net, x, extractor_name="mine").name.startswith(
        "toy-mine-"
    )
    with torch.no_grad():
        net.lin.bias[0] += 1e-3
    changed = reference_cache_path(tmp_path, "toy", net, x)
    assert changed != base and changed.name[:12] == base.name[:12]


def test_corrupt_cache_is_recomputed(tmp_path: Path) -> None:
    net, x = Counting(), _samples(20)
    path = reference_cache_path(tmp_path, "toy", net, x)
    path.write_bytes(b"junk")
    with pytest.warns(UserWarning, match="recomputing"):
        stats = reference_stats("toy", x, net, tmp_path)
    assert stats.n == 20 and FeatureStats.load(path).n == 20


def test_bad_names(tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="dataset name"):
        reference_stats("../escape", _samples(4), Counting(), tmp_path)
    with pytest.raises(LcscError, match="extractor name"):
        reference_stats("toy", _samples(4), Counting(), tmp_path, extractor_name="a/b")

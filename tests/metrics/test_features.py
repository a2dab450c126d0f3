"""The packaged digits feature nets and the training script that makes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import LcscError
from lcsc.metrics import (
    DigitsConvFeatureNet,
    DigitsFeatureNet,
    FeatureStats,
    compute_features,
    compute_features_and_logits,
    digits_features,
    frechet_distance,
)
from lcsc.metrics.features import WEIGHT_FILES

pytest.importorskip("sklearn")
from lcsc.reference.digits.data import load_digits_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "src" / "lcsc" / "metrics" / "weights"


@pytest.fixture(scope="module")
def split() -> tuple[torch.Tensor, ...]:
    return load_digits_split()


@pytest.mark.parametrize(
    ("kind", "cls", "dim"), [("main", DigitsFeatureNet, 64), ("alt", DigitsConvFeatureNet, 48)]
)
def test_packaged_nets_load_and_classify(
    kind: str, cls: type, dim: int, split: tuple[torch.Tensor, ...]
) -> None:
    _, _, x_te, y_te = split
    net = digits_features(kind)
    assert isinstance(net, cls) and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    feats, logits = compute_features_and_logits(net, x_te)
    assert feats.shape == (len(x_te), dim) and logits.shape == (len(x_te), 10)
    accuracy = float((logits.argmax(1) == y_te.numpy()).mean())
    assert accuracy >= 0.97
    # recorded at training time
    meta = read_checkpoint(WEIGHTS / WEIGHT_FILES[kind]).metadata
    assert meta["arch"] == cls.__name__
    assert float(meta["test_accuracy"]) == pytest.approx(accuracy, abs=1e-4)


def test_weight_files_are_small() -> None:
    for name in WEIGHT_FILES.values():
        assert (WEIGHTS / name).stat().st_size < 1024 * 1024


def test_input_layouts_agree(split: tuple[torch.Tensor, ...]) -> None:
    x = split[2][:10]
    net = digits_features("main")
    with torch.no_grad():
        flat = net(x)
        np.testing.assert_array_equal(flat, net(x.reshape(10, 1, 8, 8)))
        np.testing.assert_array_equal(flat, net(x.reshape(10, 8, 8)))
    with pytest.raises(LcscError, match="shape"):
        net(torch.zeros(2, 3, 8, 8))


def test_unknown_kind() -> None:
    with pytest.raises(LcscError, match="unknown digits feature net"):
        digits_features("huge")


def test_feature_spaces_rank_degradation(split: tuple[torch.Tensor, ...]) -> None:
    """Both feature spaces score held-out digits closer than noisy ones, and noise than garbage."""
    x_tr, _, x_te, _ = split
    g = torch.Generator().manual_seed(0)
    noisy = (x_te + 0.4 * torch.randn(x_te.shape, generator=g)).clamp(-1, 1)
    garbage = torch.rand(x_te.shape, generator=g) * 2 - 1
    for kind in ("main", "alt"):
        net = digits_features(kind)
        ref = FeatureStats.from_features(compute_features(net, x_tr))
        fds = [
            frechet_distance(ref, FeatureStats.from_features(compute_features(net, s)))
            for s in (x_te, noisy, garbage)
        ]
        assert fds[0] < fds[1] < fds[2], (kind, fds)


def test_training_script_is_deterministic(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "train_digits_features.py")
    outs = [tmp_path / "a", tmp_path / "b"]
    # Two runs side by side (interpreter start-up dominates): same seed, same bytes.
    procs = [
        subprocess.Popen(
            [sys.executable, script, "--kind", "alt", "--epochs", "1", "--out-dir", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for out in outs
    ]
    for proc in procs:
        log = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode == 0, log
        assert "test accuracy" in log
    a, b = (out / WEIGHT_FILES["alt"] for out in outs)
    assert a.read_bytes() == b.read_bytes()
    ckpt = read_checkpoint(a)
    assert ckpt.metadata["arch"] == "DigitsConvFeatureNet" and ckpt.metadata["epochs"] == "1"
    DigitsConvFeatureNet().load_state_dict(ckpt.tensors)

"""Inception-v3 features: errors, input conversion and safe weight loading.

torch-fidelity (behind torchmetrics' Inception) needs torchvision, which may be absent: the real
network is tested only where it imports; the wrapper logic is tested everywhere with a stand-in
backbone that has NoTrainInceptionV3's constructor and forward signatures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lcsc.metrics.features as features_module
from lcsc.checkpoint import write_checkpoint
from lcsc.errors import LcscError
from lcsc.metrics import (
    InceptionFeatures,
    compute_features,
    compute_features_and_logits,
    inception_features,
)


class StubBackbone(nn.Module):
    """Stand-in for NoTrainInceptionV3: loads its weights file, records its inputs."""

    last: StubBackbone | None = None

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        assert name == "inception-v3-compat" and features_list[1] == "logits_unbiased"
        self.features_list = features_list
        self.weights_file = Path(feature_extractor_weights_path)
        self.proj = nn.Linear(3, int(features_list[0]))
        self.fc = nn.Linear(int(features_list[0]), 1008)
        self.load_state_dict(torch.load(feature_extractor_weights_path, weights_only=True))
        self.inputs: list[torch.Tensor] = []
        StubBackbone.last = self

    def _torch_fidelity_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3
        self.inputs.append(x)
        f = self.proj(x.float().mean((2, 3)))
        return f, self.fc(f)


def _stub_state(dim: int = 64) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        k: v.clone()
        for k, v in nn.ModuleDict({"proj": nn.Linear(3, dim), "fc": nn.Linear(dim, 1008)})
        .state_dict()
        .items()
    }


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> type[StubBackbone]:
    monkeypatch.setattr(features_module, "_inception_backbone_class", lambda: StubBackbone)
    return StubBackbone


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pt_inception-2015-12-05.pth"
    with pytest.raises(LcscError, match=str(missing).replace("\\", "\\\\")):
        inception_features(missing)


def test_missing_torch_fidelity_names_package_and_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "w.pth"
    torch.save(_stub_state(), weights)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # makes `import torch_fidelity` fail
    with pytest.raises(LcscError, match=r"torch-fidelity.*lcsc\[inception\]"):
        inception_features(weights)


def test_unknown_layer(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save(_stub_state(), weights)
    with pytest.raises(LcscError, match="feature layer"):
        inception_features(weights, feature="1000")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_formats_and_safe_copy(
    tmp_path: Path, stub: type[StubBackbone], suffix: str
) -> None:
    weights = tmp_path / f"inception{suffix}"
    if suffix == ".pth":
        torch.save(_stub_state(), weights)
    else:
        write_checkpoint(weights, _stub_state())
    ext = inception_features(weights, feature="64")
    assert isinstance(ext, InceptionFeatures) and not ext.training
    assert "feature=64" in repr(ext)
    backbone = stub.last
    assert backbone is not None
    # The backbone read a tensors-only copy, removed afterwards, never the user's file.
    assert backbone.weights_file != weights and not backbone.weights_file.exists()
    torch.testing.assert_close(backbone.fc.weight, _stub_state()["fc.weight"])


def test_pickled_objects_are_refused(tmp_path: Path, stub: type[StubBackbone]) -> None:
    weights = tmp_path / "evil.pth"
    torch.save({"proj.weight": torch.zeros(2), "payload": Path("x")}, weights)
    with pytest.raises(LcscError, match=r"evil\.pth: key 'payload' is not a tensor.*unbuilt"):
        inception_features(weights)  # read by the restricted unpickler: the Path is not built


def test_wrong_weights(tmp_path: Path, stub: type[StubBackbone]) -> None:
    weights = tmp_path / "other.safetensors"
    write_checkpoint(weights, {"conv.weight": torch.zeros(3)})
    with pytest.raises(LcscError, match="not Inception-v3"):
        inception_features(weights)


def test_image_conversion(tmp_path: Path, stub: type[StubBackbone]) -> None:
    weights = tmp_path / "w.pth"
    torch.save(_stub_state(), weights)
    ext = inception_features(weights, feature="64")
    backbone = stub.last
    assert backbone is not None
    grey = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)  # out of range is clamped
    feats = ext(grey)
    assert feats.shape == (1, 64)
    seen = backbone.inputs[-1]
    assert seen.shape == (1, 3, 2, 2)
    assert seen[0, :, 0, 0].tolist() == [0, 0, 0] and seen[0, 2].flatten().tolist() == [
        0,
        128,
        255,
        255,
    ]
    raw = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    ext(raw)
    assert torch.equal(backbone.inputs[-1], raw)  # uint8 passes unchanged
    with pytest.raises(LcscError, match="not finite"):
        ext(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(LcscError, match="shape"):
        ext(torch.zeros(1, 2, 4, 4))
    f, z = compute_features_and_logits(ext, np.zeros((5, 3, 4, 4), np.uint8), batch_size=2)
    assert f.shape == (5, 64) and z.shape == (5, 1008)
    assert compute_features(ext, torch.zeros(3, 3, 4, 4)).shape == (3, 64)


def test_real_inception_with_random_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(
        "torch_fidelity", reason="torch-fidelity (needs torchvision) not importable"
    )
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # A randomly initialised network, built without any download: skip its weight loading once.
    with monkeypatch.context() as m:
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    weights = tmp_path / "random-inception.pth"
    torch.save(state, weights)
    ext = inception_features(weights)
    f, z = compute_features_and_logits(ext, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert f.shape == (2, 2048) and z.shape == (2, 1008)

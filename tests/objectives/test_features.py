"""Feature extractors named by a string: the packaged nets, Inception's file, a user's module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lcsc.errors import LcscError
from lcsc.metrics import DigitsConvFeatureNet, DigitsFeatureNet, digits_features
from lcsc.objectives import load_extractor

USER = """
import torch
torch.manual_seed(0)
instance = torch.nn.Linear(3, 2)
def factory():
    torch.manual_seed(1)
    return torch.nn.Linear(3, 2)
not_a_module = 3
def broken():
    raise ValueError("no weights here")
"""


def test_packaged_nets() -> None:
    x = torch.rand(5, 64) * 2 - 1
    for spec, cls, kind in (
        ("digits", DigitsFeatureNet, "main"),
        ("digits-alt", DigitsConvFeatureNet, "alt"),
    ):
        net = load_extractor(spec)
        assert isinstance(net, cls) and not net.training
        assert not any(p.requires_grad for p in net.parameters())
        torch.testing.assert_close(net(x), digits_features(kind)(x), rtol=0, atol=0)


def test_user_modules(tmp_path: Path) -> None:
    (tmp_path / "feats.py").write_text(USER)
    torch.manual_seed(0)
    instance = torch.nn.Linear(3, 2)
    torch.manual_seed(1)
    made = torch.nn.Linear(3, 2)
    for name, want in (("instance", instance), ("factory", made)):
        net = load_extractor(f"{tmp_path / 'feats.py'}:{name}")
        assert torch.equal(net.weight, want.weight) and not net.weight.requires_grad
    file = tmp_path / "feats.py"
    for spec, message in {
        f"{file}:not_a_module": "is int, not a torch nn.Module",
        f"{file}:missing": "has no attribute missing",
        f"{file}:broken": r"broken\(\) failed: ValueError: no weights here",
        "no_such_module_x:net": "cannot import no_such_module_x",
        "resnet": "expected one of digits, digits-alt, inception, MODULE:ATTR",
    }.items():
        with pytest.raises(LcscError, match=message):
            load_extractor(spec)


def test_inception_needs_a_local_file(tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="features=inception needs inception_weights=FILE"):
        load_extractor("inception")
    with pytest.raises(LcscError, match=r"nope.pth: Inception weights file not found"):
        load_extractor("inception", str(tmp_path / "nope.pth"))

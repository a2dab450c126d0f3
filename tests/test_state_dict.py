"""Which sub-dict holds the weights, and which prefixes go: {"model", "ema"} files, DDP, compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import CheckpointError
from lcsc.state_dict import pick, renaming, shared_prefix

P = Path("x.pt")


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_ddp_model_and_ema_load_strictly_into_the_bare_model(tmp_path: Path) -> None:
    model, ema = _net(0), _net(1)
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    ema_sd = {f"module.{k}": v for k, v in ema.state_dict().items()}
    torch.save({"model": wrapped, "ema": ema_sd, "optimizer": {"state": {}}}, tmp_path / "c.pt")
    default = read_checkpoint(tmp_path / "c.pt")
    assert (default.extraction.key, default.extraction.other_keys) == ("model", ("ema",))
    assert default.extraction.stripped == ("module.",)
    chosen = read_checkpoint(tmp_path / "c.pt", key="ema")
    fresh = _net(2)
    fresh.load_state_dict(chosen.tensors, strict=True)
    for k, v in ema.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    with pytest.raises(
        CheckpointError, match=r"c\.pt: no key 'nope' \(keys holding tensors: model, ema\)"
    ):
        read_checkpoint(tmp_path / "c.pt", key="nope")
    with pytest.raises(
        CheckpointError, match=r"c\.pt: key 'state' in 'optimizer' is not a tensor \(dict\)"
    ):
        read_checkpoint(tmp_path / "c.pt", key="optimizer")


def test_pick_defaults() -> None:
    t = torch.zeros(1)
    flat = {"w": t}
    assert pick(flat, P, None) == (flat, None, ())
    assert pick({"ema": flat, "step": 3}, P, None)[1] == "ema"  # the only state dict
    assert pick({"state_dict": flat, "ema": flat}, P, None)[1:] == ("state_dict", ("ema",))
    with pytest.raises(
        CheckpointError, match=r"several state dicts \(a, b\); choose one with --key"
    ):
        pick({"a": flat, "b": flat}, P, None)
    with pytest.raises(CheckpointError, match="not a state dict"):
        pick({"a": flat, "n": 3}, P, "n")


def test_renaming() -> None:
    names = ["_orig_mod.module.a", "_orig_mod.module.b"]
    assert renaming(names, P) == (
        {n: n[len("_orig_mod.module.") :] for n in names},
        ("_orig_mod.", "module."),
        0,
    )
    partial = ["module.a", "b"]
    assert renaming(partial, P) == ({"module.a": "module.a", "b": "b"}, (), 0)
    lit = ["model.module.w", "model.x", "ema.w"]
    assert renaming(lit, P, "model.") == (
        {"model.module.w": "module.w", "model.x": "x"},
        ("model.",),
        1,
    )
    assert renaming(["model.module.w"], P, "model.") == (
        {"model.module.w": "w"},
        ("model.", "module."),
        0,
    )
    with pytest.raises(CheckpointError, match="no key starts with the prefix 'net.'"):
        renaming(lit, P, "net.")
    with pytest.raises(CheckpointError, match="collide"):
        renaming(["model.", "model.a"], P, "model.")
    assert shared_prefix(["model.a", "model.b.c"]) == "model."
    assert shared_prefix(["model.a", "b"]) is None


def test_safetensors_prefix_renames_its_layout(tmp_path: Path) -> None:
    from lcsc.checkpoint import write_checkpoint

    write_checkpoint(
        tmp_path / "w.safetensors", {"module.a": torch.ones(2), "module.b": torch.zeros(3)}
    )
    ckpt = read_checkpoint(tmp_path / "w.safetensors")
    assert set(ckpt.tensors) == set(ckpt.layout) == {"a", "b"}
    assert torch.equal(ckpt.tensors["a"], torch.ones(2))
    with pytest.raises(CheckpointError, match="key 'ema' given, but this file holds one flat"):
        read_checkpoint(tmp_path / "w.safetensors", key="ema")

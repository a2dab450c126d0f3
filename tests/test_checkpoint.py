from __future__ import annotations

import os
from pathlib import Path

import pytest
import safetensors.torch
import torch

from lcsc.checkpoint import read_checkpoint, write_checkpoint
from lcsc.errors import CheckpointError


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, 4, generator=g),
        "h": torch.randn(5, generator=g).half(),
        "b": torch.randn(2, 2, generator=g).bfloat16(),
        "d": torch.randn(3, generator=g).double(),
        "n": torch.tensor(7),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
    }


def test_round_trip_and_compatible_with_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    flat = torch.arange(10.0)
    tensors = _tensors() | {"view_a": flat[:4].view(2, 2), "view_b": flat[4:]}  # shared storage
    write_checkpoint(path, tensors, {"note": "hi"})
    ours = read_checkpoint(path)
    reference = safetensors.torch.load_file(path)  # an independent reader
    assert ours.metadata == {"note": "hi"}
    assert set(ours.tensors) == set(reference) == set(tensors)
    for key, t in tensors.items():
        assert ours.tensors[key].dtype == t.dtype
        assert torch.equal(ours.tensors[key], t)
        assert torch.equal(reference[key], t)


def test_reads_files_written_by_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "y.safetensors"
    safetensors.torch.save_file(_tensors(), path, metadata={"k": "v"})
    ckpt = read_checkpoint(path)
    assert ckpt.metadata == {"k": "v"}
    for key, t in _tensors().items():
        assert torch.equal(ckpt.tensors[key], t)


def test_truncated_safetensors_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_checkpoint(path, {"w": torch.randn(100)})
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    with pytest.raises(CheckpointError, match=r"t\.safetensors.*'w'.*truncated"):
        read_checkpoint(path)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"t\.safetensors.*truncated"):
        read_checkpoint(path)


def test_corrupt_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    path.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"c\.safetensors"):
        read_checkpoint(path)


def test_pt_state_dict_and_nested(tmp_path: Path) -> None:
    sd = {"a": torch.randn(3), "b": torch.arange(4)}
    torch.save(sd, tmp_path / "flat.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "nested.pt")
    for name in ("flat.pt", "nested.pt"):
        ckpt = read_checkpoint(tmp_path / name)
        assert set(ckpt.tensors) == {"a", "b"}
        assert torch.equal(ckpt.tensors["a"], sd["a"])


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # runs os.system on a full unpickle
        return (os.system, (f"touch {self.marker}",))


def test_pt_with_pickled_code_never_runs_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    sd = {"w": torch.randn(2)}
    with open(path, "wb") as f:
        torch.save({"w": sd["w"], "payload": _Exploit(str(marker))}, f)
    with pytest.raises(CheckpointError, match=r"evil\.pt: key 'payload' is not a tensor.*unbuilt"):
        read_checkpoint(path)
    torch.save({"state_dict": sd, "payload": _Exploit(str(marker))}, tmp_path / "nested.pt")
    got = read_checkpoint(tmp_path / "nested.pt")  # the weights, and the payload as a placeholder
    assert torch.equal(got.tensors["w"], sd["w"])
    assert got.extraction.placeholders == (f"{os.system.__module__}.system",)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: a full unpickle runs it
    assert marker.exists()


def test_corrupt_pt_and_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        read_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"w\.txt.*unknown checkpoint format"):
        read_checkpoint(tmp_path / "w.txt")
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_failed_write_leaves_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.safetensors"
    write_checkpoint(path, {"w": torch.ones(2)})
    with pytest.raises(CheckpointError):
        write_checkpoint(path, {"w": torch.ones(2, dtype=torch.complex64)})
    assert torch.equal(read_checkpoint(path).tensors["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]

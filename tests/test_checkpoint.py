from __future__ import annotations

import json
import os
import struct
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


# ----------------------------------------------------------------- header validation (issue 12)
def _raw(path: Path, header: object, data: bytes, *, raw: bytes | None = None) -> Path:
    """A safetensors file written byte by byte, so that it can break the format's rules."""
    head = raw if raw is not None else json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return path


def _f32(shape: list, offsets: list, **extra: object) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": offsets, **extra}


# Each breaks one rule of the format; the safetensors library refuses every one of them.
MALFORMED = {
    "negative offset reads the header": ({"a": _f32([4], [-16, 0])}, 16, "'a'.*non-negative"),
    "far negative offset": ({"a": _f32([2], [-999784, -999776])}, 8, "'a'.*non-negative"),
    "overlapping tensors": (
        {"a": _f32([2], [0, 8]), "b": _f32([1], [4, 8])},
        8,
        "'b'.*overlaps",
    ),
    "same bytes twice": ({"a": _f32([2], [0, 8]), "b": _f32([2], [0, 8])}, 8, "overlaps"),
    "gap before a tensor": ({"a": _f32([1], [4, 8])}, 8, "'a'.*gap"),
    "bytes after the last tensor": ({"a": _f32([2], [0, 8])}, 16, "8 bytes after the last"),
    "negative shape": ({"a": _f32([-2, -2], [0, 16])}, 16, "'a'.*shape.*non-negative"),
    "float shape": ({"a": _f32([2.0], [0, 8])}, 8, "'a'.*shape"),
    "bool in shape": ({"a": _f32([True, 2], [0, 8])}, 8, "'a'.*shape"),
    "float offset": ({"a": _f32([2], [0, 8.0])}, 8, "'a'.*data_offsets"),
    "three offsets": ({"a": _f32([2], [0, 8, 8])}, 8, "'a'.*data_offsets"),
    "offsets reversed": ({"a": _f32([0], [8, 0])}, 8, "'a'"),
    "size does not match shape": ({"a": _f32([3], [0, 8])}, 8, "'a'.*do not match"),
    "unknown dtype": ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, 8, "F33"),
    "missing shape": ({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, 8, "'a'.*corrupt"),
    "entry not an object": ({"a": [1, 2]}, 8, "'a'.*corrupt"),
    "metadata a list": ({"__metadata__": ["x"], "a": _f32([2], [0, 8])}, 8, "__metadata__"),
    "metadata an empty list": ({"__metadata__": [], "a": _f32([2], [0, 8])}, 8, "__metadata__"),
    "metadata value a number": (
        {"__metadata__": {"k": 1}, "a": _f32([2], [0, 8])},
        8,
        "__metadata__",
    ),
    "header a list": (None, 0, "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_are_refused_like_the_reference(tmp_path: Path, case: str) -> None:
    header, nbytes, message = MALFORMED[case]
    raw = b"[1]" if header is None else None
    path = _raw(tmp_path / "bad.safetensors", header, bytes(nbytes), raw=raw)
    with pytest.raises(Exception, match="deserializing header"):  # the reference refuses it
        safetensors.torch.load_file(path)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: .*" + message):
        read_checkpoint(path)


# Unusual but valid files: the reference reads each, and so must lcsc, to the same tensors.
VALID = {
    "empty file": ({}, 0),
    "empty tensor": ({"a": _f32([0, 3], [0, 0])}, 0),
    "huge empty tensor": ({"a": _f32([0, 2**62], [0, 0])}, 0),
    "scalar": ({"a": _f32([], [0, 4])}, 4),
    "offsets not in key order": ({"b": _f32([1], [0, 4]), "a": _f32([1], [4, 8])}, 8),
    "null metadata": ({"__metadata__": None, "a": _f32([2], [0, 8])}, 8),
    "unknown extra field": ({"a": _f32([2], [0, 8], note=1)}, 8),
    "empty between tensors": (
        {"a": _f32([1], [0, 4]), "e": _f32([0], [4, 4]), "b": _f32([1], [4, 8])},
        8,
    ),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_unusual_valid_headers_read_like_the_reference(tmp_path: Path, case: str) -> None:
    header, nbytes = VALID[case]
    data = torch.arange(nbytes // 4, dtype=torch.float32).numpy().tobytes()
    path = _raw(tmp_path / "ok.safetensors", header, data)
    reference = safetensors.torch.load_file(path)
    ours = read_checkpoint(path).tensors
    assert set(ours) == set(reference)
    for key, t in reference.items():
        assert ours[key].shape == t.shape and torch.equal(ours[key], t)


def test_files_of_the_reference_writer_tile_the_data_block(tmp_path: Path) -> None:
    """Every layout the safetensors library writes passes the strict checks, and lcsc's own
    files pass the library's."""
    g = torch.Generator().manual_seed(1)
    for n in range(1, 6):
        tensors = {f"t{i}": torch.randn(i + 1, n, generator=g) for i in range(n)}
        tensors |= {"z": torch.zeros(0), "i": torch.arange(n, dtype=torch.int8)}
        path = tmp_path / f"lib{n}.safetensors"
        safetensors.torch.save_file(tensors, path, metadata={"n": str(n)})
        ckpt = read_checkpoint(path)
        assert ckpt.metadata == {"n": str(n)}
        assert all(torch.equal(ckpt.tensors[k], v) for k, v in tensors.items())
        write_checkpoint(tmp_path / "ours.safetensors", tensors)
        assert set(safetensors.torch.load_file(tmp_path / "ours.safetensors")) == set(tensors)


def test_inspect_reports_a_negative_offset(tmp_path: Path) -> None:
    """Issue 12 case 3: the file used to read its own header bytes as a tensor, silently."""
    from lcsc.inspection import inspect_paths

    _raw(tmp_path / "ckpt_1.safetensors", {"a": _f32([4], [-16, 0])}, bytes(16))
    report = inspect_paths([tmp_path])
    assert len(report.problems) == 1 and "non-negative" in report.problems[0]


def test_header_length_beyond_the_file_is_refused_before_reading(tmp_path: Path) -> None:
    """A memory bomb: a header claiming 2^63 bytes is refused without reading or allocating."""
    path = tmp_path / "bomb.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63) + b'{"a": 1}')
    with pytest.raises(CheckpointError, match=r"bomb\.safetensors: corrupt or truncated"):
        read_checkpoint(path)

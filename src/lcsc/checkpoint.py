"""Reading and writing single checkpoint files, safely and without copies.

``.safetensors`` files are parsed here (the format is an 8-byte header length, a JSON header and
one flat data block) and memory-mapped, so every tensor is a zero-copy view: a trajectory larger
than RAM can be combined tensor by tensor, and repeated combines read from the page cache.
``.pt`` files are loaded with ``torch.load(weights_only=True)``, never a full unpickle.
Writes are atomic (see :mod:`lcsc.atomic`).
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lcsc.atomic import atomic_path
from lcsc.errors import CheckpointError

SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")

_ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024
_ENOMEM_HINT = (
    "cannot map the file into memory: lcsc keeps every checkpoint of a trajectory mapped, so"
    " the address-space limit (ulimit -v) must exceed the trajectory's size on disk; mapped"
    " pages are reclaimable page cache, not allocated memory (docs/trajectories.md)"
)
# State dicts nested one level deep, as many training scripts save them.
_NESTED_KEYS = ("state_dict", "model", "module", "model_state_dict", "net")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a safetensors data block."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # byte offset from the start of the data block
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class Checkpoint:
    """One opened checkpoint: lazy zero-copy tensors plus string metadata."""

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    # safetensors only: the layout of the data block, for flat multi-tensor views.
    layout: dict[str, TensorInfo] | None = None
    _buffer: mmap.mmap | None = None
    _data_start: int = 0

    def flat_view(self, dtype: torch.dtype, begin: int, end: int) -> torch.Tensor:
        """A 1-D zero-copy view of bytes ``[begin, end)`` of the data block (safetensors only)."""
        assert self._buffer is not None
        count = (end - begin) // torch.empty((), dtype=dtype).element_size()
        if count == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(
            self._buffer, dtype=dtype, count=count, offset=self._data_start + begin
        )


def _parse_safetensors(path: Path) -> Checkpoint:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file (no header)")
            (n,) = struct.unpack("<Q", head)
            if n > min(_MAX_HEADER, size - 8):
                raise CheckpointError(f"{path}: corrupt or truncated safetensors header")
            header = json.loads(f.read(n).decode("utf-8"))
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else None
    except CheckpointError:
        raise
    except OSError as exc:
        if exc.errno == errno.ENOMEM:
            raise CheckpointError(f"{path}: {_ENOMEM_HINT} ({exc})") from exc
        raise CheckpointError(f"{path}: unreadable safetensors file: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file: {exc}") from exc
    metadata, layout = _check_header(path, header, size - 8 - n)
    tensors: dict[str, torch.Tensor] = {}
    ckpt = Checkpoint(path, tensors, metadata, layout, buffer, 8 + n)
    for key, ti in layout.items():
        tensors[key] = ckpt.flat_view(ti.dtype, ti.begin, ti.end).view(ti.shape)
    return ckpt


def _is_count(value: object) -> bool:
    """A JSON non-negative integer (not a bool, not a float such as 2.0)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_header(
    path: Path, header: object, data_size: int
) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    """Validate a parsed safetensors header as the format specifies; return metadata, layout.

    The rules are the reference implementation's: a JSON object; an optional
    ``__metadata__`` mapping strings to strings; per tensor a known dtype, a shape of
    non-negative integers and ``data_offsets`` ``[begin, end]`` with ``end - begin`` equal to
    the shape's byte size; and, sorted by offset, the tensors tile the data block exactly
    (from byte 0, no gap, no overlap, nothing after the last one), so no byte is read twice
    and no header byte can be read as data.
    """
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    layout: dict[str, TensorInfo] = {}
    for key, info in header.items():
        layout[key] = _tensor_info(path, key, info, data_size)
    position = 0
    for key, ti in sorted(layout.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if ti.begin != position:
            what = "overlaps the previous tensor" if ti.begin < position else "leaves a gap"
            raise CheckpointError(
                f"{path}: key '{key}': invalid data_offsets [{ti.begin}, {ti.end}]: {what}"
                f" (expected to start at byte {position})"
            )
        position = ti.end
    if position != data_size:
        raise CheckpointError(
            f"{path}: {data_size - position} bytes after the last tensor; the data block must"
            " be fully covered by the tensors"
        )
    return metadata, layout


def _tensor_info(path: Path, key: str, info: object, data_size: int) -> TensorInfo:
    """One header entry as a :class:`TensorInfo`, or a :class:`CheckpointError` naming it."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise CheckpointError(f"{path}: key '{key}': corrupt entry {info!r}")
    dtype = _ST_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise CheckpointError(f"{path}: key '{key}': unsupported dtype {info['dtype']!r}")
    shape, offsets = info["shape"], info["data_offsets"]
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        raise CheckpointError(
            f"{path}: key '{key}': shape {shape!r} is not a list of non-negative integers"
        )
    nonzero = 1
    for s in shape:
        nonzero *= max(s, 1)
    if nonzero >= 2**63:
        raise CheckpointError(f"{path}: key '{key}': shape {shape} is too large")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise CheckpointError(
            f"{path}: key '{key}': data_offsets {offsets!r} is not [begin, end] with"
            " non-negative integers"
        )
    ti = TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])
    if ti.end > data_size:
        raise CheckpointError(
            f"{path}: key '{key}': data ends at byte {ti.end} but the file holds {data_size}"
            " (truncated file?)"
        )
    if ti.end - ti.begin != ti.numel * torch.empty((), dtype=dtype).element_size():
        raise CheckpointError(
            f"{path}: key '{key}': data_offsets [{ti.begin}, {ti.end}] do not match its shape"
            f" {list(ti.shape)} and dtype {info['dtype']}"
        )
    return ti


def _load_pt(path: Path) -> Checkpoint:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled objects other than tensors, which"
            " could run arbitrary code (only weights_only loading is allowed). Convert it to"
            " .safetensors in a trusted environment."
        ) from exc
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint: {exc}") from exc
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for name in _NESTED_KEYS:
            inner = obj.get(name)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors)")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: key '{key}' is not a tensor ({type(value).__name__})")
        tensors[str(key)] = value
    return Checkpoint(path, tensors)


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a ``.safetensors`` (memory-mapped) or ``.pt``-style checkpoint.

    Raises :class:`CheckpointError` naming the file for a missing, truncated, corrupt or unsafe
    file. Values are not checked here (see :mod:`lcsc.trajectory` for finiteness checks).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    if p.suffix == ".safetensors":
        return _parse_safetensors(p)
    if p.suffix in SUFFIXES:
        return _load_pt(p)
    raise CheckpointError(f"{p}: unknown checkpoint format (expected one of {', '.join(SUFFIXES)})")


def write_checkpoint(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write ``tensors`` as a ``.safetensors`` file, atomically, streaming tensor by tensor.

    Tensors may share storage (for example views of one flat buffer); each is written by value.
    """
    entries = [(key, tensors[key]) for key in sorted(tensors)]
    for key, t in entries:
        if t.dtype not in _ST_NAMES:
            raise CheckpointError(f"{path}: key '{key}': dtype {t.dtype} cannot be saved")
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for key, t in entries:
        nbytes = t.numel() * t.element_size()
        header[key] = {
            "dtype": _ST_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # data block 8-byte aligned, as safetensors expects
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, t in entries:
            if t.numel():
                flat = t.detach().to("cpu").contiguous().reshape(-1)
                f.write(memoryview(flat.view(torch.uint8).numpy()))

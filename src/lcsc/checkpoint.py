"""Reading and writing single checkpoint files, safely and without copies.

``.safetensors`` files are parsed here (the format is an 8-byte header length, a JSON header and
one flat data block) and memory-mapped, so every tensor is a zero-copy view: a trajectory larger
than RAM can be combined tensor by tensor, and repeated combines read from the page cache.
``.pt`` files are loaded with ``torch.load(weights_only=True)``, never a full unpickle; when
that refuses the file's other classes, with lcsc's restricted unpickler (:mod:`lcsc.unpickler`),
which runs none of them. Writes are atomic (see :mod:`lcsc.atomic`).
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lcsc import state_dict
from lcsc.atomic import atomic_path
from lcsc.errors import CheckpointError
from lcsc.unpickler import Placeholder, restricted_load

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
SHARD_INDEX = ".index.json"  # sharded safetensors (diffusers, transformers)


def is_checkpoint_file(path: Path) -> bool:
    """Whether ``path``'s name is that of a checkpoint lcsc reads (timm's ``.pth.tar`` too)."""
    return path.suffix in SUFFIXES or path.name.endswith((".pth.tar", SHARD_INDEX))


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
    extraction: state_dict.Extraction = field(default_factory=state_dict.Extraction)

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
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    data_size = size - data_start
    layout: dict[str, TensorInfo] = {}
    tensors: dict[str, torch.Tensor] = {}
    ckpt = Checkpoint(path, tensors, dict(metadata), layout, buffer, data_start)
    for key, info in header.items():
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path}: key '{key}': unsupported or corrupt entry {info}"
            ) from exc
        ti = TensorInfo(dtype, shape, begin, end)
        if end > data_size or begin > end:
            raise CheckpointError(
                f"{path}: key '{key}': data ends at byte {end} but the file holds {data_size}"
                " (truncated file?)"
            )
        if end - begin != ti.numel * torch.empty((), dtype=dtype).element_size():
            raise CheckpointError(f"{path}: key '{key}': byte size does not match its shape")
        layout[key] = ti
        tensors[key] = ckpt.flat_view(dtype, begin, end).view(shape)
    return ckpt


def _torch_load(path: Path) -> tuple[object, tuple[str, ...]]:
    """The unpickled file and the classes replaced by placeholders (none when torch's own
    weights_only loader accepted it)."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True), ()
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True), ()  # legacy format
    except pickle.UnpicklingError:
        # Other classes (hyper-parameter objects, callbacks): tensors only, none of their code.
        obj, placeholders = restricted_load(path)
        return obj, tuple(placeholders)
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint: {exc}") from exc


def _load_pt(path: Path, key: str | None) -> Checkpoint:
    obj, placeholders = _torch_load(path)
    found, used, others = state_dict.pick(obj, path, key)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in found.items():
        if not isinstance(value, torch.Tensor):
            kind = type(value).__name__
            if isinstance(value, Placeholder):
                kind = f"a {value.global_name} object, left unbuilt"
            where = f"key '{name}'" + (f" in '{used}'" if used is not None else "")
            raise CheckpointError(f"{path}: {where} is not a tensor ({kind})")
        tensors[str(name)] = value.detach()  # a plain tensor: no Parameter, no hooks
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    extraction = state_dict.Extraction(used, others, placeholders=placeholders)
    return Checkpoint(path, tensors, extraction=extraction)


def _renamed(ckpt: Checkpoint, strip_prefix: str | None, wrappers: bool) -> Checkpoint:
    """``ckpt`` with wrapper prefixes (and ``strip_prefix``) removed from its key names."""
    names, stripped, dropped = state_dict.renaming(ckpt.tensors, ckpt.path, strip_prefix, wrappers)
    if stripped:
        ckpt.tensors = {new: ckpt.tensors[old] for old, new in names.items()}
        if ckpt.layout is not None:
            ckpt.layout = {new: ckpt.layout[old] for old, new in names.items()}
    ckpt.extraction = replace(
        ckpt.extraction,
        stripped=stripped,
        dropped=dropped,
        shared_prefix=state_dict.shared_prefix(ckpt.tensors),
    )
    return ckpt


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    strip_prefix: str | None = None,
    strip_wrappers: bool = True,
) -> Checkpoint:
    """Open a ``.safetensors`` (memory-mapped), sharded ``.safetensors.index.json`` or
    ``.pt``-style checkpoint.

    ``key`` picks the sub-dict of a ``.pt``-style file holding several (``"ema"``); by default
    see :func:`lcsc.state_dict.pick`. ``module.``/``_orig_mod.`` prefixes carried by every key
    are removed (unless not ``strip_wrappers``: the names as stored, for rewriting the file);
    ``strip_prefix`` keeps only the keys carrying it, without it. What was done is
    in ``Checkpoint.extraction``. Raises :class:`CheckpointError` naming the file for a missing,
    truncated, corrupt or unsafe file. Values are not checked here (see :mod:`lcsc.trajectory`).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    if p.suffix == ".safetensors" or p.name.endswith(SHARD_INDEX):
        if key is not None:
            raise CheckpointError(
                f"{p}: key '{key}' given, but this file holds one flat state dict"
            )
        if p.suffix == ".safetensors":
            return _renamed(_parse_safetensors(p), strip_prefix, strip_wrappers)
        from lcsc.sharded import read_sharded

        return _renamed(read_sharded(p, read_checkpoint), strip_prefix, strip_wrappers)
    if is_checkpoint_file(p):
        return _renamed(_load_pt(p, key), strip_prefix, strip_wrappers)
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

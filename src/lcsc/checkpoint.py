"""Reading and writing single checkpoint files, safely and without copies.

``.safetensors`` files are parsed here (the format is an 8-byte header length, a JSON header and
one flat data block) and memory-mapped, so every tensor is a zero-copy view: a trajectory larger
than RAM can be combined tensor by tensor, and repeated combines read from the page cache.
``.pt`` files are loaded with ``torch.load(weights_only=True)``, never a full unpickle; when
that refuses the file's other classes, with lcsc's restricted unpickler (:mod:`lcsc.unpickler`),
which runs none of them. Writes are atomic (see :mod:`lcsc.atomic`).
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
_ENOMEM_HINT = (
    "cannot map the file into memory: lcsc keeps every checkpoint of a trajectory mapped, so"
    " the address-space limit (ulimit -v) must exceed the trajectory's size on disk; mapped"
    " pages are reclaimable page cache, not allocated memory (docs/trajectories.md)"
)


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
    # sharded only (``path`` is the index): the shard files holding the tensors.
    shards: tuple[Checkpoint, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file this checkpoint was read from: itself, or its index and shards."""
        return (self.path, *(s.path for s in self.shards))

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

        # Shards keep their names as stored: the index lists them so, and prefixes are
        # stripped from the whole checkpoint at once.
        shards = read_sharded(p, lambda shard: read_checkpoint(shard, strip_wrappers=False))
        return _renamed(shards, strip_prefix, strip_wrappers)
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

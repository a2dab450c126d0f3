"""Tensors from torch files whose pickle ``torch.load(weights_only=True)`` refuses, run no code.

Training checkpoints often pickle more than weights: hyper-parameter objects (an argparse
``Namespace``, an OmegaConf config), callback states. :func:`restricted_load` reads such files
with an unpickler that resolves a global only through a fixed table of torch's tensor-rebuild
functions, storage types, dtypes, ``OrderedDict`` and the plain built-in containers and value
types (``dict``, ``set``, ``int``, ...); every other global becomes an inert
:class:`Placeholder` class. So no constructor, ``__reduce__`` callable or ``__setstate__`` of
the file's classes ever runs and no module the file names is imported: a malicious pickle yields
at most placeholders. Both torch formats are read: the zip archive (``torch.save``'s default)
and the legacy stream (``_use_new_zipfile_serialization=False``). Python 2 names, which
``torch.save``'s pickle protocol 2 writes (``__builtin__.dict``), are read as their Python 3
names, as pickle's own ``fix_imports`` does.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch

from lcsc.errors import CheckpointError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class Placeholder:
    """Stands for an object of a class the pickle named; it only holds the data it was given."""

    __slots__ = ("args", "state", "items")
    global_name: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        self = object.__new__(cls)
        self.args, self.state, self.items = (args, kwargs), None, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # REDUCE calls the class; the arguments are kept by __new__

    def __setstate__(self, state: Any) -> None:  # BUILD: keep, never apply
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on dict subclasses
        self.items.append((key, value))

    def append(self, value: Any) -> None:  # APPENDS on list subclasses
        self.items.append(value)

    def extend(self, values: list[Any]) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<placeholder for {self.global_name}>"


class _Dict(dict):
    """``collections.OrderedDict`` as loaded: a plain dict whose pickled attributes (a state
    dict's ``_metadata``) are kept aside instead of being set."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StorageType:
    """What ``torch.FloatStorage`` and friends resolve to: just their dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex64,
        torch.complex128,
    )
}
_STORAGE_TYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(v) is int and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"tensor {what} is not a tuple of integers")
    return value


def _tensor(
    storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype | None = None
) -> torch.Tensor:
    if not isinstance(storage, torch.storage.TypedStorage) or type(offset) is not int:
        raise pickle.UnpicklingError("tensor without a storage from this file")
    if dtype is not None:
        storage = torch.storage.TypedStorage(
            wrap_storage=storage._untyped_storage, dtype=dtype, _internal=True
        )
    # torch's own rebuild; set_ checks that the view fits in the storage.
    return torch._utils._rebuild_tensor(
        storage, offset, _ints(size, "size"), _ints(stride, "stride")
    )


def _rebuild_tensor_v2(storage, offset, size, stride, *_ignored):  # type: ignore[no-untyped-def]
    return _tensor(storage, offset, size, stride)  # requires_grad, hooks, metadata dropped


def _rebuild_tensor_v3(storage, offset, size, stride, _grad, _hooks, dtype, *_ignored):  # type: ignore[no-untyped-def]
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError("tensor dtype is not a dtype")
    return _tensor(storage, offset, size, stride, dtype)


def _rebuild_parameter(data, *_ignored):  # type: ignore[no-untyped-def]
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):  # type: ignore[no-untyped-def]
    # Tensor subclasses: rebuild the plain tensor only, and only with our own functions.
    if not any(func is r for r in _REBUILDERS) or not isinstance(args, tuple):
        raise pickle.UnpicklingError("unsupported tensor subclass")
    return func(*args)


# Built-ins a pickle may name (OmegaConf stores ``object_type=dict``) or call (protocol 2 pickles a
# set as ``set([...])``): calling one builds a container or value from what the file already
# holds. Not ``bytes``, ``bytearray`` or ``range``: ``bytes(10**12)`` allocates from a few bytes.
_BUILTINS = (dict, list, tuple, set, frozenset, bool, int, float, complex, str)
_REBUILDERS: tuple[Callable[..., Any], ...] = (
    _rebuild_tensor_v2,
    _rebuild_tensor_v3,
    _rebuild_parameter,
)
_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_TYPES.items()},
    **{("torch", name): dtype for name, dtype in _DTYPES.items()},
    **{("builtins", t.__name__): t for t in _BUILTINS},
}


class _Unpickler(pickle.Unpickler):
    """Globals from the table above, placeholders for the rest; storages from ``storage``."""

    def __init__(self, file: BinaryIO, storage: Callable[[tuple[Any, ...]], Any]) -> None:
        super().__init__(file)
        self._storage = storage
        self.placeholders: dict[tuple[str, str], type[Placeholder]] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = _python3_name(str(module), str(name))
        if key in _GLOBALS:
            return _GLOBALS[key]
        cls = self.placeholders.get(key)
        if cls is None:
            cls = type(
                "Placeholder", (Placeholder,), {"__slots__": (), "global_name": ".".join(key)}
            )
            self.placeholders[key] = cls
        return cls

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        return self._storage(pid)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """A Python 2 global's Python 3 name (``__builtin__.long`` -> ``builtins.int``), by pickle's
    own table; the name only, nothing is imported."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _storage_dtype(storage_type: Any) -> torch.dtype:
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    return storage_type.dtype


def _typed(untyped: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _load_zip(path: Path) -> tuple[Any, list[str]]:
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: not a torch checkpoint archive (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(zf.namelist())
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder") != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        loaded: dict[str, torch.UntypedStorage] = {}

        def storage(pid: tuple[Any, ...]) -> Any:
            if len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[2], str):
                raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
            dtype, key, numel = _storage_dtype(pid[1]), pid[2], pid[4]
            if key not in loaded:
                record = prefix + "data/" + key
                if record not in names:
                    raise pickle.UnpicklingError(f"storage '{key}' missing from the archive")
                size = zf.getinfo(record).file_size  # checked before inflating anything
                if type(numel) is not int or size != numel * dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage '{key}' has the wrong size")
                data = bytearray(zf.read(record))
                loaded[key] = torch.frombuffer(data, dtype=torch.uint8).untyped_storage()
            return _typed(loaded[key], dtype)

        with zf.open(pickles[0]) as f:
            return _run(f, storage)


def _load_legacy(path: Path) -> tuple[Any, list[str]]:
    size = path.stat().st_size
    roots: dict[str, tuple[torch.UntypedStorage, torch.dtype]] = {}

    def storage(pid: tuple[Any, ...]) -> Any:
        if pid[0] == "module":  # a pickled module's source: never used
            return None
        if len(pid) != 6 or pid[0] != "storage" or not isinstance(pid[2], str):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dtype, key, numel, view = _storage_dtype(pid[1]), pid[2], pid[4], pid[5]
        if key not in roots:
            if type(numel) is not int or not 0 <= numel * dtype.itemsize <= size:
                raise pickle.UnpicklingError(f"storage '{key}' is larger than the file")
            roots[key] = (torch.UntypedStorage(numel * dtype.itemsize), dtype)
        untyped = roots[key][0]
        if view is not None:
            _, offset, count = view
            if type(offset) is not int or type(count) is not int:
                raise pickle.UnpicklingError(f"storage '{key}': bad view")
            untyped = untyped[offset * dtype.itemsize : (offset + count) * dtype.itemsize]
        return _typed(untyped, dtype)

    with open(path, "rb") as f:
        for expected in (_LEGACY_MAGIC, _LEGACY_PROTOCOL):
            if _run(f, storage)[0] != expected:
                raise CheckpointError(f"{path}: not a torch checkpoint (bad magic number)")
        sys_info = _run(f, storage)[0]
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        obj, placeholders = _run(f, storage)
        keys, _ = _run(f, storage)
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: corrupt legacy checkpoint (no storage list)")
        for key in keys:
            if key not in roots:
                raise CheckpointError(f"{path}: corrupt legacy checkpoint (storage '{key}')")
            untyped, dtype = roots[key]
            head = f.read(8)
            (numel,) = struct.unpack("<q", head) if len(head) == 8 else (-1,)
            data = f.read(untyped.nbytes())
            if numel * dtype.itemsize != untyped.nbytes() or len(data) != untyped.nbytes():
                raise CheckpointError(f"{path}: truncated or corrupt storage '{key}'")
            if data:
                target = torch.empty(0, dtype=torch.uint8).set_(untyped)
                target.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    return obj, placeholders


def _run(f: BinaryIO, storage: Callable[[tuple[Any, ...]], Any]) -> tuple[Any, list[str]]:
    unpickler = _Unpickler(f, storage)
    obj = unpickler.load()
    return obj, sorted(".".join(k) for k in unpickler.placeholders)


def restricted_load(path: str | Path) -> tuple[Any, list[str]]:
    """Unpickle the torch file ``path`` without running any of its code.

    Returns the object (tensors, dicts, lists, tuples, plain values and :class:`Placeholder`
    instances) and the sorted names of the globals that were replaced by placeholders. Raises
    :class:`CheckpointError` naming the file when it is not a readable torch file.
    """
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            return _load_zip(p)
        return _load_legacy(p)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{p}: unreadable torch checkpoint: {exc}") from exc
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise CheckpointError(f"{p}: corrupt torch checkpoint: {exc}") from exc
    except RecursionError as exc:
        raise CheckpointError(f"{p}: corrupt torch checkpoint (nested too deeply)") from exc

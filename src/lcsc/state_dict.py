"""Finding the weights in a loaded checkpoint: which sub-dict holds them, which prefixes to drop.

Training scripts save ``{"model": ..., "ema": ..., "optimizer": ...}`` (``--key`` chooses one),
Lightning and timm ``{"state_dict": ..., "state_dict_ema": ...}``; DDP prefixes every key with
``module.`` and ``torch.compile`` with ``_orig_mod.``. What was chosen and removed is recorded
in an :class:`Extraction`, so ``lcsc inspect`` can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lcsc.errors import CheckpointError

# Tried in this order when the file's top level is not itself a state dict.
NESTED_KEYS = ("state_dict", "model", "module", "model_state_dict", "net")
# Wrapper prefixes, removed when every key carries one.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class Extraction:
    """How a checkpoint's tensors were found inside the file."""

    key: str | None = None  # the sub-dict used; None: the file's top level
    other_keys: tuple[str, ...] = ()  # other sub-dicts that hold tensors
    stripped: tuple[str, ...] = ()  # prefixes removed from every key, in order
    dropped: int = 0  # keys left out because they lacked the requested prefix
    placeholders: tuple[str, ...] = ()  # classes the restricted unpickler did not build
    shared_prefix: str | None = None  # a first name component every key still shares


def _holds_tensors(value: Any) -> bool:
    return isinstance(value, Mapping) and any(isinstance(v, torch.Tensor) for v in value.values())


def pick(obj: Any, path: Path, key: str | None) -> tuple[Mapping[Any, Any], str | None, tuple]:
    """The state dict inside ``obj``: ``obj[key]``, else ``obj`` itself when it maps names to
    tensors, else the first of :data:`NESTED_KEYS` present, else its only sub-dict of tensors.
    Returns it with the key used and the other keys holding tensors."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors)")
    candidates = [str(k) for k, v in obj.items() if _holds_tensors(v)]
    if key is not None:
        if key not in obj:
            raise CheckpointError(
                f"{path}: no key '{key}' (keys holding tensors: {', '.join(candidates) or 'none'})"
            )
        if not isinstance(obj[key], Mapping):
            raise CheckpointError(
                f"{path}: key '{key}' is not a state dict ({type(obj[key]).__name__})"
            )
        return obj[key], key, tuple(c for c in candidates if c != key)
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None, ()
    chosen = next((k for k in NESTED_KEYS if k in candidates), None)
    if chosen is None and len(candidates) == 1:
        chosen = candidates[0]
    if chosen is None and candidates:
        raise CheckpointError(
            f"{path}: several state dicts ({', '.join(candidates)}); choose one with --key"
        )
    if chosen is None:
        return obj, None, ()  # reported key by key by the caller
    return obj[chosen], chosen, tuple(c for c in candidates if c != chosen)


def renaming(
    names: Iterable[str], path: Path, strip_prefix: str | None = None, wrappers: bool = True
) -> tuple[dict[str, str], tuple[str, ...], int]:
    """New names for ``names``: wrapper prefixes (:data:`WRAPPER_PREFIXES`, unless not
    ``wrappers``) removed while every name carries one; with ``strip_prefix``, only the names
    carrying it are kept, without it.

    Returns ``{old: new}`` for the kept names, the prefixes removed and how many were dropped.
    """
    current = {n: n for n in names}
    stripped: list[str] = []
    dropped = 0

    def strip_wrappers() -> None:
        while current and wrappers:
            prefix = next(
                (p for p in WRAPPER_PREFIXES if all(n.startswith(p) for n in current.values())),
                None,
            )
            if prefix is None:
                return
            stripped.append(prefix)
            for old, new in current.items():
                current[old] = new[len(prefix) :]

    strip_wrappers()
    if strip_prefix:
        kept = {o: n[len(strip_prefix) :] for o, n in current.items() if n.startswith(strip_prefix)}
        if not kept:
            raise CheckpointError(f"{path}: no key starts with the prefix '{strip_prefix}'")
        dropped = len(current) - len(kept)
        current = kept
        stripped.append(strip_prefix)
        strip_wrappers()
    if len(set(current.values())) != len(current) or "" in current.values():
        raise CheckpointError(f"{path}: removing prefixes {stripped} makes key names collide")
    return current, tuple(stripped), dropped


def shared_prefix(names: Iterable[str]) -> str | None:
    """``"model."`` when every name starts with that first component (a hint for --strip-prefix)."""
    names = list(names)
    firsts = {n.split(".", 1)[0] for n in names}
    if len(firsts) == 1 and all("." in n for n in names):
        return firsts.pop() + "."
    return None

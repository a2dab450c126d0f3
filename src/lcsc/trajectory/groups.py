"""Per-group coefficients: one coefficient vector per group of parameters (the paper's future
work; mergekit's layer granularity).

A grouping splits a checkpoint's keys into ``G`` disjoint groups given by name patterns; the
combination with a ``(G, K)`` coefficient matrix ``A`` is, for every key ``n`` of group ``g``,
``theta[n] = sum_i A[g, i] theta_i[n]``. With one group it is the ungrouped combination.

Pattern syntax (one group per pattern, in order):

* a glob (``fnmatch``, case-sensitive; ``*`` also matches dots): ``net.blocks.*.fc1.*``;
* a name without ``*``, ``?`` or ``[``: a module prefix, matching the name itself and every
  name below it: ``net.embed`` matches ``net.embed.mlp.0.weight``, not ``net.embedding.x``;
* several alternatives joined by ``|`` form one group: ``net.inp|net.embed``.

Every key lands in exactly one group: keys no pattern matches form a last group named
``rest`` (absent when every key is matched); a pattern that matches no key, and a key that two
patterns match, are errors naming them (first-match-wins would make a group's content depend
on the order of the patterns, silently).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from lcsc.errors import LcscError

if TYPE_CHECKING:  # torch is only needed for annotations; keep importing cheap (the CLI)
    import torch

REST = "rest"  # the name of the group of unmatched keys
AUTO = "auto"  # one group per top-level module (module_patterns): the search's default
NONE = "none"  # no groups: one coefficient vector for all parameters
_GLOB = frozenset("*?[")


class KeyedCombinable(Protocol):
    """A trajectory or a :class:`~lcsc.trajectory.span.SpanCombiner`."""

    def combine(
        self, coefficients: npt.NDArray[np.float64], *, keys: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]: ...


@dataclasses.dataclass(frozen=True)
class Groups:
    """A partition of a checkpoint's keys; build with :func:`resolve_groups`.

    Attributes:
        names: the ``G`` group names: the patterns as given, then ``rest`` if any key is left.
        members: the keys of each group (``G`` tuples), in the checkpoint's key order.
        keys: every key, in the checkpoint's order.
    """

    names: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def patterns(self) -> list[str]:
        """The patterns that rebuild this grouping with :func:`resolve_groups`."""
        return [name for name in self.names if name != REST]

    def describe(self) -> list[dict[str, Any]]:
        """JSON-able summary: each group's name and number of keys."""
        return [{"name": n, "keys": len(m)} for n, m in zip(self.names, self.members, strict=True)]

    def matrix(self, coefficients: npt.ArrayLike, k: int | None = None) -> npt.NDArray[np.float64]:
        """``coefficients`` (``(G, K)`` or its flattening ``(G*K,)``) as a finite float64
        ``(G, K)`` matrix; ``k`` (if given) is the number of checkpoints."""
        a = np.asarray(coefficients, dtype=np.float64)
        g = len(self)
        if a.ndim == 1 and a.size % g == 0:
            a = a.reshape(g, -1)
        if a.ndim != 2 or a.shape[0] != g or (k is not None and a.shape[1] != k):
            want = f"({g}, {'K' if k is None else k})"
            raise LcscError(f"expected {want} coefficients, one row per group; got {a.shape}")
        if not np.isfinite(a).all():
            raise LcscError("coefficients must be finite")
        return a


def split_patterns(texts: Iterable[str]) -> list[str]:
    """Patterns from ``--groups`` values: each a comma-separated list (spaces stripped)."""
    patterns = [p.strip() for text in texts for p in text.split(",")]
    if any(not p for p in patterns):
        raise LcscError(f"--groups: empty pattern in {','.join(texts)!r}")
    return patterns


def parse_groups(texts: Sequence[str], keys: Sequence[str]) -> Groups | str | None:
    """``--groups`` values on a checkpoint's ``keys``: None for ``none``, :data:`AUTO` for
    ``auto`` (resolved by the search, which knows the method), else the patterns resolved."""
    given = split_patterns(texts)
    if given == [NONE]:
        return None
    return AUTO if given == [AUTO] else resolve_groups(keys, given)


def module_patterns(keys: Sequence[str]) -> list[str]:
    """One module-prefix pattern per top-level module of ``keys`` (``--groups auto``).

    The top level is the first name component after the prefix that every key shares
    (``net.`` in ``net.inp.weight``, ``net.blocks.0.fc1.bias``, ...); a module list's entries
    (a component followed by an integer, ``blocks.0``) are modules of their own. Patterns come
    in the order of the keys' first appearance; a single tensor gives its own name.
    """
    if not keys:
        raise LcscError("groups: the checkpoints hold no keys")
    parts = [key.split(".") for key in keys]
    depth = 0  # the number of leading components every key shares, keeping one per key
    while all(len(p) > depth + 1 and p[depth] == parts[0][depth] for p in parts):
        depth += 1
    patterns: list[str] = []
    for p in parts:
        take = depth + 2 if len(p) > depth + 2 and p[depth + 1].isdigit() else depth + 1
        pattern = ".".join(p[:take])
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def resolve_groups(keys: Sequence[str], patterns: Sequence[str]) -> Groups:
    """Group ``keys`` by ``patterns`` (syntax in the module docstring).

    Raises:
        LcscError: no pattern, an empty or repeated pattern, the reserved name ``rest``, a
            pattern matching no key, or a key matching two patterns.
    """
    if not patterns:
        raise LcscError("groups: give at least one pattern")
    owner: dict[str, str] = {}
    members: list[tuple[str, ...]] = []
    for pattern in patterns:
        alternatives = pattern.split("|")
        if pattern == REST or any(not alt.strip() for alt in alternatives):
            what = "is reserved for the unmatched keys" if pattern == REST else "has an empty part"
            raise LcscError(f"groups: pattern {pattern!r} {what}")
        if pattern in owner.values():
            raise LcscError(f"groups: pattern {pattern!r} is given twice")
        matched = []
        for alt in alternatives:
            hits = [key for key in keys if _matches(alt.strip(), key)]
            if not hits:
                shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
                raise LcscError(
                    f"groups: pattern {alt.strip()!r} matches no key of the checkpoints"
                    f" ({len(keys)} keys: {shown})"
                )
            matched += [key for key in hits if key not in matched]
        for key in matched:
            if key in owner:
                raise LcscError(
                    f"groups: key {key!r} matches both {owner[key]!r} and {pattern!r}; every key"
                    " must be in one group"
                )
            owner[key] = pattern
        members.append(tuple(key for key in keys if owner.get(key) == pattern))
    names = list(patterns)
    rest = tuple(key for key in keys if key not in owner)
    if rest:
        names.append(REST)
        members.append(rest)
    return Groups(tuple(names), tuple(members), tuple(keys))


def _matches(pattern: str, key: str) -> bool:
    if _GLOB & set(pattern):
        return fnmatch.fnmatchcase(key, pattern)
    prefix = pattern.rstrip(".")
    return key == prefix or key.startswith(prefix + ".")


def combine_groups(
    source: KeyedCombinable, groups: Groups | None, coefficients: npt.ArrayLike
) -> dict[str, torch.Tensor]:
    """The combination of ``source``'s checkpoints with row ``g`` of ``coefficients`` (shape
    ``(G, K)``, or flattened ``(G*K,)``) for the keys of group ``g``; keys in the checkpoint's
    order. Groups with equal rows are combined in one call, so equal rows give exactly the
    ungrouped combination. ``groups=None``: ``source.combine(coefficients)``, one vector."""
    if groups is None:
        return source.combine(coefficients)
    a = groups.matrix(coefficients)
    rows: dict[bytes, tuple[npt.NDArray[np.float64], list[str]]] = {}
    for row, members in zip(a, groups.members, strict=True):
        rows.setdefault(row.tobytes(), (row, []))[1].extend(members)
    out: dict[str, torch.Tensor] = {}
    for row, members in rows.values():
        out.update(source.combine(row, keys=members))
    return {key: out[key] for key in groups.keys}

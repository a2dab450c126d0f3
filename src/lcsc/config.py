"""One way to validate settings: checks that coerce a value or raise one error naming it.

Every config of lcsc and CheckFree is a frozen dataclass deriving from :class:`Config`; its
``__post_init__`` checks each field with :meth:`Config.check` and states its cross-field rules
with :meth:`Config.require`. Function arguments are checked with the same functions
(:func:`integer`, :func:`real`, ...). The CLI only maps flags to fields and prints the error as it
is, so a message names the field or argument (``budget``), never a flag.

Numbers from numpy count as numbers (``np.int64(3)`` is an integer); ``bool`` is not a number.
Values are coerced (``2`` -> ``2.0`` for a real), so equal settings give equal configs.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar, NoReturn, TypeVar

from lcsc.errors import LcscError

C = TypeVar("C", bound="Config")
_MISSING = object()


def _fail(error: type[LcscError], where: str, what: str, value: object = _MISSING) -> NoReturn:
    field = where.rpartition(".")[2]
    shown = "" if value is _MISSING else f", got {field}={value!r}"
    exc = error(f"{where} {what}{shown}")
    exc.field = field  # type: ignore[attr-defined]  # lets a caller map it to a flag
    raise exc


def integer(
    name: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    optional: bool = False,
    error: type[LcscError] = LcscError,
) -> int | None:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (None allowed when ``optional``)."""
    if optional and value is None:
        return None
    bounds = {
        (False, False): f" in [{minimum}, {maximum}]",
        (False, True): f" >= {minimum}",
        (True, False): f" <= {maximum}",
        (True, True): "",
    }[(minimum is None, maximum is None)]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(error, name, f"must be an integer{bounds}", value)
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        _fail(error, name, f"must be an integer{bounds}", value)
    return v


def real(
    name: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
    optional: bool = False,
    error: type[LcscError] = LcscError,
) -> float | None:
    """``value`` as a finite ``float``; ``minimum``/``maximum`` are inclusive bounds,
    ``above``/``below`` exclusive ones."""
    if optional and value is None:
        return None
    wanted = _wanted(minimum, maximum, above, below)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(error, name, f"must be {wanted}", value)
    v = float(value)  # type: ignore[arg-type]
    ok = math.isfinite(v)
    ok = ok and (minimum is None or v >= minimum) and (maximum is None or v <= maximum)
    ok = ok and (above is None or v > above) and (below is None or v < below)
    if not ok:
        _fail(error, name, f"must be {wanted}", value)
    return v


def integers(
    name: str, value: object, minimum: int | None = None, *, error: type[LcscError] = LcscError
) -> tuple[int, ...]:
    """``value``, a non-empty sequence (a JSON list too), as a tuple of integers >= ``minimum``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        _fail(error, name, "must be a sequence of integers", value)
    out = tuple(value)  # type: ignore[call-overload]
    wanted = "a non-empty sequence of integers" + ("" if minimum is None else f" >= {minimum}")
    if not out:
        _fail(error, name, f"must be {wanted}", value)
    try:
        return tuple(integer(name, v, minimum, error=error) for v in out)  # type: ignore[misc]
    except LcscError:
        _fail(error, name, f"must be {wanted}", value)


def boolean(name: str, value: object, *, error: type[LcscError] = LcscError) -> bool:
    """``value`` as a ``bool`` (numpy booleans too; 0 and 1 are not booleans)."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        _fail(error, name, "must be True or False", value)
    return bool(value)


def choice(
    name: str,
    value: object,
    choices: Collection[Any],
    *,
    optional: bool = False,
    error: type[LcscError] = LcscError,
) -> Any:
    """``value`` itself if it is one of ``choices``."""
    if optional and value is None:
        return None
    if value not in choices:
        _fail(error, name, f"must be one of {', '.join(map(str, choices))}", value)
    return value


def _wanted(
    minimum: float | None, maximum: float | None, above: float | None, below: float | None
) -> str:
    """``in [0, 1)``, ``> 0 (a positive number)``, ``>= 2``... for the given bounds."""
    low = ("[", minimum) if minimum is not None else ("(", above) if above is not None else None
    high = ("]", maximum) if maximum is not None else (")", below) if below is not None else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        positive = " (a positive number)" if low == ("(", 0) else ""
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}{positive}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]:g}"
    return "a finite number"


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of the frozen config dataclasses: field checks, JSON round trip.

    Subclasses call ``self.check(name, integer, minimum=1)`` etc. in ``__post_init__``; the
    coerced value is stored back (the dataclass is frozen, hence ``object.__setattr__``) and
    errors read ``ClassName.field must be ..., got field=value``.
    """

    error: ClassVar[type[LcscError]] = LcscError

    @property
    def owner(self) -> str:
        return type(self).__name__

    def check(self, name: str, kind: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Check field ``name`` with ``kind`` (:func:`integer`, :func:`real`, ...) and store
        the coerced value."""
        value = kind(f"{self.owner}.{name}", getattr(self, name), *args, error=self.error, **kwargs)
        object.__setattr__(self, name, value)

    def require(self, ok: bool, name: str, what: str, value: object = _MISSING) -> None:
        """A cross-field rule: unless ``ok``, raise ``ClassName.name what[, got name=value]``."""
        if not ok:
            _fail(self.error, f"{self.owner}.{name}", what, value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: tuples become lists, nested configs dicts."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a newer or foreign config)."""
        if not isinstance(d, Mapping):
            raise cls.error(f"{cls.__name__}: expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise cls.error(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(**dict(d))
        except TypeError as exc:
            raise cls.error(f"{cls.__name__}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value

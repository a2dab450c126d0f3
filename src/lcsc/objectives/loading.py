"""Loading a user's objective: ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``.

FUNCTION is a factory: it is called with the ``KEY=VALUE`` pairs as string keyword arguments and
returns the objective, a callable ``state_dict -> float`` (lower is better).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from lcsc.errors import LcscError

Objective = Callable[[dict[str, torch.Tensor]], float]


def parse_pairs(pairs: Sequence[str], flag: str = "--objective-arg") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed pair is named (with ``flag``)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise LcscError(f"{flag} '{pair}': expected KEY=VALUE with a Python name as KEY")
        out[key] = value
    return out


def load_objective(
    spec: str,
    kwargs: dict[str, str] | None = None,
    flag: str = "--objective",
    arg_flag: str = "--objective-arg",
) -> Objective:
    """Import ``spec`` (``MODULE:FUNCTION`` or ``FILE.py:FUNCTION``) and build the objective.

    Errors name ``flag`` and ``arg_flag`` (the validation objective's flags for that one).
    Whatever goes wrong in the user's code (a syntax error, an exception at import or in the
    factory) becomes one :class:`LcscError` naming ``spec`` and the error.
    """
    target, name = _split(spec, flag)
    module = _import(f"{flag} '{spec}'", target)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise LcscError(f"{flag} '{spec}': {target} has no function {name}")
    kwargs = kwargs or {}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise LcscError(f"{flag} '{spec}': bad {arg_flag}: {exc}") from exc
    except ValueError:  # no signature to check (some builtins): let the call decide
        pass
    try:
        objective = factory(**kwargs)
    except Exception as exc:
        raise LcscError(f"{flag} '{spec}': {name}() failed: {_describe(exc)}") from exc
    if not callable(objective):
        raise LcscError(f"{flag} '{spec}': {name}() must return a callable objective")
    return objective


def objective_identity(spec: str, kwargs: dict[str, str] | None = None) -> dict[str, Any]:
    """What names an objective in a search's workdir: ``spec`` (a ``.py`` file by its absolute
    path, so the working directory does not matter) and the factory's arguments."""
    target, name = _split(spec)
    if target.endswith(".py"):
        target = str(Path(target).resolve())
    return {"spec": f"{target}:{name}", "args": dict(sorted((kwargs or {}).items()))}


def _split(spec: str, flag: str = "--objective") -> tuple[str, str]:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise LcscError(f"{flag} '{spec}': expected MODULE:FUNCTION or FILE.py:FUNCTION")
    return target, name


def _import(where: str, target: str) -> ModuleType:
    """Import the module or ``.py`` file ``target``; errors start with ``where``."""
    try:
        if target.endswith(".py"):
            return _import_file(where, Path(target))
        if "" not in sys.path:
            sys.path.insert(0, "")  # like `python -m`: modules in the working directory
        return importlib.import_module(target)
    except LcscError:
        raise
    except ImportError as exc:
        raise LcscError(f"{where}: cannot import {target}: {exc}") from exc
    except Exception as exc:  # SyntaxError included: the user's code, not lcsc's
        raise LcscError(f"{where}: importing {target} failed: {_describe(exc)}") from exc


def _import_file(where: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise LcscError(f"{where}: no such file {path}")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _describe(exc: Exception) -> str:
    """``Type: message``, with the file and line for a syntax error; an :class:`LcscError`
    (a factory rejecting its arguments) is its message alone."""
    if isinstance(exc, LcscError):
        return str(exc)
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"

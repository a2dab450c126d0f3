"""Feature extractors named by a string, for objective factories' ``--objective-arg`` values.

``digits`` / ``digits-alt`` (the packaged digits nets), ``inception`` (Inception-v3 from a local
weights file) or ``MODULE:ATTR`` / ``FILE.py:ATTR``: your ``nn.Module``, or a callable (a class,
a factory) that returns one when called without arguments.
"""

from __future__ import annotations

from torch import nn

from lcsc.errors import LcscError
from lcsc.metrics import digits_features, inception_features
from lcsc.objectives.loading import _describe, _import, _split

EXTRACTORS = ("digits", "digits-alt", "inception", "MODULE:ATTR")


def load_extractor(spec: str, inception_weights: str = "", where: str = "features") -> nn.Module:
    """The extractor ``spec`` names (see the module docstring), in eval mode without gradients.

    ``inception_weights`` is the local weights file ``inception`` needs; ``where`` starts errors.
    """
    if spec in ("digits", "digits-main"):
        module = digits_features("main")
    elif spec == "digits-alt":
        module = digits_features("alt")
    elif spec == "inception":
        if not inception_weights:
            raise LcscError(f"{where}=inception needs inception_weights=FILE (never downloaded)")
        module = inception_features(inception_weights)
    elif ":" in spec:
        module = _user_module(spec, where)
    else:
        raise LcscError(f"{where} {spec!r}: expected one of {', '.join(EXTRACTORS)}")
    module.requires_grad_(False)
    return module.eval()


def _user_module(spec: str, where: str) -> nn.Module:
    target, name = _split(spec, where)
    obj = getattr(_import(f"{where} '{spec}'", target), name, None)
    if obj is None:
        raise LcscError(f"{where} '{spec}': {target} has no attribute {name}")
    if not isinstance(obj, nn.Module) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise LcscError(f"{where} '{spec}': {name}() failed: {_describe(exc)}") from exc
    if not isinstance(obj, nn.Module):
        raise LcscError(f"{where} '{spec}': is {type(obj).__name__}, not a torch nn.Module")
    return obj

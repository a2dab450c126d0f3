"""Feature extractors: ``nn.Module``s mapping a batch of samples to features ``(N, D)``.

Any ``nn.Module`` whose ``forward`` returns ``(N, D)`` (or ``(N, D, 1, 1)``, or a tuple whose first
item is that) is accepted wherever an extractor is expected. The extractors here also have
``features_and_logits(x) -> ((N, D), (N, C))``, which the Inception Score needs.

Shipped: two small classifiers for scikit-learn's 8x8 digits (an MLP, ``"main"``, and an
independent conv net, ``"alt"``, for a second feature space), and a wrapper of torchmetrics'
Inception-v3 loaded from a local weights file (never downloaded).
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import LcscError

DIGITS_NUM_CLASSES = 10
DIGITS_PIXELS = 64  # 8 x 8 grey levels 0..16

WEIGHT_FILES = {"main": "digits_features.safetensors", "alt": "digits_features_alt.safetensors"}


def digits_to_model_space(pixels: torch.Tensor) -> torch.Tensor:
    """scikit-learn digit pixels 0..16 -> the model-space range [-1, 1] (``pixel / 8 - 1``)."""
    return pixels.to(torch.float32) / 8.0 - 1.0


def _as_digit_images(x: torch.Tensor) -> torch.Tensor:
    """(N, 64), (N, 8, 8) or (N, 1, 8, 8) in [-1, 1] -> (N, 1, 8, 8) float32, clamped."""
    if x.ndim == 2 and x.shape[1] == DIGITS_PIXELS:
        x = x.reshape(-1, 1, 8, 8)
    elif x.ndim == 3 and x.shape[1:] == (8, 8):
        x = x.unsqueeze(1)
    elif not (x.ndim == 4 and x.shape[1:] == (1, 8, 8)):
        raise LcscError(
            f"digit samples must have shape (N, 64) or (N, 1, 8, 8), got {tuple(x.shape)}"
        )
    # Real pixels never leave [-1, 1]; clamping is the analogue of the uint8 quantisation that
    # image FID pipelines apply to generated samples (NaN passes through and is caught later).
    return x.to(torch.float32).clamp(-1.0, 1.0)


class DigitsFeatureNet(nn.Module):
    """MLP classifier for 8x8 digits; features are its penultimate ReLU layer.

    Input: (N, 64) or (N, 1, 8, 8) in [-1, 1]. ``forward`` -> features (N, feature_dim).
    """

    def __init__(self, hidden: int = 256, feature_dim: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(DIGITS_PIXELS, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, DIGITS_NUM_CLASSES))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, feature_dim) and class logits (N, 10)."""
        f = self.body(_as_digit_images(x).flatten(1))
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]


class DigitsConvFeatureNet(nn.Module):
    """Small conv net for 8x8 digits, an independent second feature space.

    Input: (N, 64) or (N, 1, 8, 8) in [-1, 1]. ``forward`` -> features (N, feature_dim).
    """

    def __init__(self, channels: int = 32, feature_dim: int = 48, dropout: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),  # -> 2x2
            nn.Flatten(),
            nn.Linear(2 * channels * 4, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, DIGITS_NUM_CLASSES))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, feature_dim) and class logits (N, 10)."""
        f = self.body(_as_digit_images(x))
        return f, self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]


DIGITS_ARCHS: dict[str, type[nn.Module]] = {"main": DigitsFeatureNet, "alt": DigitsConvFeatureNet}


def digits_features(kind: str = "main") -> nn.Module:
    """The shipped digits feature net (``"main"``: MLP, ``"alt"``: conv net), in eval mode.

    Weights are read from the package (``lcsc/metrics/weights``), never downloaded.
    """
    if kind not in WEIGHT_FILES:
        raise LcscError(
            f"unknown digits feature net {kind!r} (expected one of {sorted(WEIGHT_FILES)})"
        )
    model = DIGITS_ARCHS[kind]()
    resource = importlib.resources.files("lcsc.metrics") / "weights" / WEIGHT_FILES[kind]
    with importlib.resources.as_file(resource) as path:
        if not Path(path).is_file():
            raise LcscError(
                f"{path}: the packaged digits feature weights are missing; regenerate them with"
                " scripts/train_digits_features.py"
            )
        ckpt = read_checkpoint(path)
        arch = ckpt.metadata.get("arch")
        if arch != type(model).__name__:
            raise LcscError(f"{path}: holds weights for {arch!r}, expected {type(model).__name__}")
        try:
            model.load_state_dict(ckpt.tensors)  # copies out of the memory map
        except RuntimeError as exc:
            raise LcscError(f"{path}: weights do not fit {type(model).__name__}: {exc}") from exc
    model.requires_grad_(False)
    return model.eval()


# --- Inception-v3 ---------------------------------------------------------------------------

INCEPTION_FEATURES = ("64", "192", "768", "2048")
_INSTALL_HINT = "install the optional extra: pip install 'lcsc[inception]'"


def _inception_backbone_class() -> type[nn.Module]:
    """torchmetrics' NoTrainInceptionV3, or a clear error naming what is missing."""
    try:
        import torch_fidelity  # noqa: F401  # torchmetrics' Inception is torch-fidelity's
    except ImportError as exc:
        raise LcscError(
            f"Inception features need the package 'torch-fidelity' (which needs torchvision);"
            f" {_INSTALL_HINT} ({exc})"
        ) from exc
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as exc:
        raise LcscError(
            f"Inception features need the package 'torchmetrics'; {_INSTALL_HINT}"
        ) from exc
    return NoTrainInceptionV3


class InceptionFeatures(nn.Module):
    """Inception-v3 (the FID network) features and logits for RGB images.

    Input: (N, 3, H, W) or (N, 1, H, W), either float in the model-space range [-1, 1] or uint8
    0..255. Floats are quantised to uint8 as saved images would be. ``forward`` -> (N, D) with
    D = int(``feature``); ``features_and_logits`` adds the 1008 unbiased Inception logits.
    """

    def __init__(self, backbone: nn.Module, feature: str, antialias: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature = feature
        self.antialias = antialias

    def extra_repr(self) -> str:
        return f"feature={self.feature}, antialias={self.antialias}"

    @staticmethod
    def to_uint8(x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W), float in [-1, 1] or uint8 -> uint8 (N, 3, H, W)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise LcscError(
                f"images must have shape (N, 3, H, W) or (N, 1, H, W), got {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8:
            if not torch.isfinite(x).all():
                raise LcscError("images are not finite (NaN or Inf samples)")
            x = ((x.to(torch.float32) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, D) and unbiased logits (N, 1008)."""
        # NoTrainInceptionV3.forward returns only the first requested output; its tuple-returning
        # core is what gives features and logits from one pass.
        feats, logits = self.backbone._torch_fidelity_forward(self.to_uint8(x))
        return feats.reshape(x.shape[0], -1), logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]


def inception_features(
    weights_path: str | os.PathLike[str], feature: str = "2048", antialias: bool = False
) -> InceptionFeatures:
    """Inception-v3 feature extractor (torchmetrics' ``NoTrainInceptionV3``) from a local file.

    ``weights_path``: torch-fidelity's ``pt_inception-2015-12-05`` weights, as ``.pth`` or
    ``.safetensors``; a missing file is an error, nothing is downloaded. ``feature``: the layer,
    one of 64, 192, 768, 2048 (pool3, the FID standard). ``antialias=False`` keeps the
    TensorFlow-compatible resize of the original FID code. Needs ``lcsc[inception]``.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise LcscError(
            f"{path}: Inception weights file not found (never downloaded; see docs/metrics.md)"
        )
    feature = str(feature)
    if feature not in INCEPTION_FEATURES:
        raise LcscError(
            f"unknown Inception feature layer {feature!r} (one of {INCEPTION_FEATURES})"
        )
    backbone_cls = _inception_backbone_class()
    # torch-fidelity unpickles the file with weights_only=False; read it safely ourselves first
    # and hand it a fresh tensors-only copy, so no user-supplied pickle is ever executed.
    state = {k: v.clone() for k, v in read_checkpoint(path).tensors.items()}
    with tempfile.TemporaryDirectory(prefix="lcsc-inception-") as tmp:
        safe = Path(tmp) / "weights.pth"
        torch.save(state, safe)
        try:
            backbone = backbone_cls(
                name="inception-v3-compat",
                features_list=[feature, "logits_unbiased"],
                feature_extractor_weights_path=str(safe),
                antialias=antialias,
            )
        except RuntimeError as exc:  # load_state_dict: missing/unexpected keys, shapes
            raise LcscError(f"{path}: not Inception-v3 (torch-fidelity) weights: {exc}") from exc
    if not hasattr(backbone, "_torch_fidelity_forward"):
        raise LcscError(f"this torchmetrics is too old for Inception features; {_INSTALL_HINT}")
    return InceptionFeatures(backbone, feature, antialias).eval()

"""The settings of one training run (:class:`TrainConfig`), checked when built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lcsc.config import Config, boolean, choice, integer, real
from lcsc.reference.generative.networks import ModelConfig
from lcsc.reference.generative.schedules import MomentumDecay, NoiseCurriculum

KINDS = ("dm", "ct", "cd")
DISTANCES = ("huber", "l2")
# EDM (Karras et al. 2022) for diffusion; iCT (Song & Dhariwal 2023) for consistency models.
_P_DEFAULTS = {"dm": (-1.2, 1.2), "ct": (-1.1, 2.0), "cd": (-1.1, 2.0)}
_FROM_JSON = {
    "model": ModelConfig,
    "noise_curriculum": NoiseCurriculum,
    "momentum_decay": MomentumDecay,
}


@dataclass(frozen=True)
class TrainConfig(Config):
    """One training run.

    Attributes:
        kind: ``"dm"`` (EDM diffusion), ``"ct"`` (improved consistency training) or ``"cd"``
            (consistency distillation from ``teacher``).
        model: the network; its ``parametrisation`` must be ``"dm"`` for dm, ``"cm"`` otherwise.
        data: ``"digits"``, a ``.npz`` file or an image folder (see :mod:`.data`).
        iterations, batch_size, lr, betas: Adam on ``batch_size`` samples per iteration.
        warmup: iterations of linear learning-rate warm-up (0: none).
        lr_final: None (constant lr) or the lr of the last iteration: after warm-up the lr
            follows a cosine from ``lr`` down to ``lr_final`` (a converged end of training).
        record_every, keep, compact: the trajectory Recorder's ``every``, ``keep``, ``compact``.
        ema_rate: per-iteration EMA decay of the saved EMA model.
        seed: fixes initialisation, batches, noise and dropout.
        test_fraction: fraction of the data held out (never trained on).
        log_every: iterations per line of ``train_log.jsonl``.
        p_mean, p_std: lognormal noise-level distribution (None: -1.2/1.2 for dm, -1.1/2.0 for
            ct/cd).
        sigma_max, rho: the noise-level discretisation (sigma_min is the model's).
        ct_s0, ct_s1: iCT curriculum, from ``s0`` to ``s1`` discretisation steps.
        cd_levels: number of noise levels of the CD discretisation.
        distance: ``"huber"`` (pseudo-Huber, c = 0.00054 sqrt(d)) or ``"l2"``, for ct/cd.
        teacher: cd only: a dm output directory (its ema.safetensors is used) or a file.
        noise_curriculum: None (off) or a :class:`NoiseCurriculum`: the easy, high noise
            levels are drawn less and less often (dm: the lognormal; ct/cd: its pairs).
        momentum_decay: None (off) or a :class:`MomentumDecay`: Adam's ``beta1`` decreases,
            with a learning-rate compensation.
    """

    kind: str
    model: ModelConfig
    data: str = "digits"
    iterations: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0
    lr_final: float | None = None
    record_every: int = 20
    keep: int | None = None
    compact: bool = False
    ema_rate: float = 0.999
    seed: int = 0
    test_fraction: float = 0.2
    log_every: int = 10
    p_mean: float | None = None
    p_std: float | None = None
    sigma_max: float = 80.0
    rho: float = 7.0
    ct_s0: int = 10
    ct_s1: int = 1280
    cd_levels: int = 18
    distance: str = "huber"
    teacher: str | None = None
    noise_curriculum: NoiseCurriculum | None = None
    momentum_decay: MomentumDecay | None = None

    def __post_init__(self) -> None:
        for name, cls in _FROM_JSON.items():  # mappings come from JSON (train_config.json)
            if isinstance(getattr(self, name), Mapping):
                object.__setattr__(self, name, cls.from_dict(getattr(self, name)))
        self.check("kind", choice, KINDS)
        self.require(
            isinstance(self.model, ModelConfig), "model", "must be a ModelConfig", self.model
        )
        want = "dm" if self.kind == "dm" else "cm"
        parametrisation = self.model.parametrisation
        self.require(
            parametrisation == want,
            "model",
            f"needs parametrisation {want!r} for kind {self.kind!r}",
            parametrisation,
        )
        for name in ("iterations", "batch_size", "record_every", "log_every", "ct_s0", "ct_s1"):
            self.check(name, integer, 1)
        self.check("cd_levels", integer, 2)
        self.check("warmup", integer, 0)
        self.check("seed", integer, 0)
        self.check("keep", integer, 1, optional=True)
        self.check("compact", boolean)
        self.check("lr", real, above=0.0)
        self.check("lr_final", real, 0.0, optional=True)
        if self.lr_final is not None:
            msg = f"must not exceed lr {self.lr} (a decay)"
            self.require(self.lr_final <= self.lr, "lr_final", msg, self.lr_final)
        self._check_betas()
        self.check("ema_rate", real, 0.0, below=1.0)
        self.check("test_fraction", real, 0.0, below=1.0)
        self.check("p_mean", real, optional=True)
        self.check("p_std", real, above=0.0, optional=True)
        self.check("sigma_max", real)
        msg = f"must exceed the model's sigma_min {self.model.sigma_min}"
        self.require(self.sigma_max > self.model.sigma_min, "sigma_max", msg, self.sigma_max)
        self.check("rho", real, above=0.0)
        self.require(
            self.ct_s1 >= self.ct_s0, "ct_s1", f"must be >= ct_s0 {self.ct_s0}", self.ct_s1
        )
        self.check("distance", choice, DISTANCES)
        self._check_teacher_and_schedules()

    def _check_betas(self) -> None:
        betas = tuple(self.betas)
        self.require(len(betas) == 2, "betas", "must be two numbers in [0, 1)", self.betas)
        object.__setattr__(
            self,
            "betas",
            tuple(real(f"TrainConfig.betas[{i}]", b, 0.0, below=1.0) for i, b in enumerate(betas)),
        )

    def _check_teacher_and_schedules(self) -> None:
        needed = self.kind == "cd"
        what = "is required for kind 'cd'" if needed else "is only allowed for kind 'cd'"
        self.require((self.teacher is not None) == needed, "teacher", what, self.teacher)
        for name, cls in (("noise_curriculum", NoiseCurriculum), ("momentum_decay", MomentumDecay)):
            value = getattr(self, name)
            self.require(
                value is None or isinstance(value, cls),
                name,
                f"must be None or a {cls.__name__}",
                value,
            )
        decay = self.momentum_decay
        if decay is not None and decay.start is None:
            self.require(
                decay.end <= self.betas[0],
                "momentum_decay",
                f"end must not exceed Adam's beta1 {self.betas[0]} (a decay)",
                decay.end,
            )

    def lr_at(self, step: int) -> float:
        """The (uncompensated) learning rate of 1-based iteration ``step``: linear warm-up,
        then constant or, with ``lr_final``, a cosine decay to ``lr_final`` at the last step."""
        if self.warmup and step < self.warmup:
            return self.lr * step / self.warmup
        if self.lr_final is None:
            return self.lr
        span = max(self.iterations - self.warmup, 1)
        t = min(max(step - self.warmup, 0) / span, 1.0)
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1.0 + math.cos(math.pi * t))

    @property
    def noise_distribution(self) -> tuple[float, float]:
        """``(p_mean, p_std)`` with the kind's defaults filled in."""
        d_mean, d_std = _P_DEFAULTS[self.kind]
        return (
            d_mean if self.p_mean is None else float(self.p_mean),
            d_std if self.p_std is None else float(self.p_std),
        )

"""Frozen, validated settings of a CheckFree run: the model, the failures and the training.

Every field is checked once, here, when the config is built; a bad value raises
:class:`~lcsc.errors.LcscError` naming the field. Nothing downstream re-validates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lcsc.errors import LcscError

#: Recovery strategies: CheckFree and CheckFree+, the two classic baselines and three ablations
#: of the CheckFree recovery formula (copy the previous stage, plain average, random weights).
STRATEGIES = ("checkfree", "checkfree+", "checkpoint", "redundant", "copy", "uniform", "random")
#: Strategies that rebuild a lost stage from its neighbours' weights (CheckFree's constraints:
#: no edge stage, no two adjacent stages lost in the same iteration).
NEIGHBOUR_STRATEGIES = ("checkfree", "copy", "uniform", "random")
FAILING_STAGES = ("intermediate", "all")
DEVICES = ("cpu", "cuda")


def _positive_int(owner: str, name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LcscError(f"{owner}.{name}: must be an integer >= {minimum}, got {value!r}")


def _finite(owner: str, name: str, value: object, low: float, high: float = math.inf) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise LcscError(f"{owner}.{name}: must be a number in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """A LLaMA-style decoder-only LM cut into ``stages`` pipeline stages.

    Stage ``i`` holds transformer layers ``[i * L, (i + 1) * L)`` with ``L = layers_per_stage``;
    stage 0 also holds the token embedding, stage ``S - 1`` the final RMSNorm and the LM head.
    Every stage has the same layer shapes, so any two stages' layers can be averaged or copied.

    Attributes:
        stages: ``S``, at least 3 (CheckFree needs an intermediate stage with two neighbours).
        layers_per_stage: transformer blocks per stage.
        dim: model width ``d``; ``heads`` must divide it and ``d / heads`` must be even (rotary).
        heads: attention heads.
        seq_len: context length ``T`` (tokens per training sequence).
        vocab: vocabulary size (256: byte-level tokens).
        mlp_hidden: SwiGLU hidden width; ``None``: ``8d/3`` rounded up to a multiple of 16.
        init_std: standard deviation of the normal initialisation of embeddings and linears.
    """

    stages: int = 6
    layers_per_stage: int = 1
    dim: int = 64
    heads: int = 4
    seq_len: int = 64
    vocab: int = 256
    mlp_hidden: int | None = None
    init_std: float = 0.02

    def __post_init__(self) -> None:
        owner = "ModelConfig"
        if isinstance(self.stages, int) and not isinstance(self.stages, bool) and self.stages < 3:
            raise LcscError(
                f"{owner}.stages: CheckFree needs at least 3 pipeline stages (an intermediate"
                f" stage has two neighbours), got {self.stages}"
            )
        for name in ("stages", "layers_per_stage", "dim", "heads", "seq_len", "vocab"):
            _positive_int(owner, name, getattr(self, name))
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise LcscError(
                f"{owner}.heads: must divide dim ({self.dim}) into an even head width"
                f" (rotary positions), got {self.heads}"
            )
        if self.mlp_hidden is not None:
            _positive_int(owner, "mlp_hidden", self.mlp_hidden)
        _finite(owner, "init_std", self.init_std, 0.0)

    @property
    def hidden(self) -> int:
        """The SwiGLU hidden width."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return -(-8 * self.dim // 48) * 16  # ceil(8d / 3 / 16) * 16


@dataclass(frozen=True)
class FailureConfig:
    """Which stages are lost when.

    Each stage fails independently at the start of an executed iteration with probability
    ``p = 1 - (1 - h)^(iteration_time_s / 3600)``, ``h = rate_percent / 100`` (an hourly failure
    rate turned into a per-iteration one). The draws come from their own seeded stream, so every
    strategy sees the same failures for the same seed.

    Attributes:
        rate_percent: hourly per-stage failure rate ``h`` in percent, in ``[0, 100)``.
        iteration_time_s: the modelled duration of one iteration (the paper's setting is a
            slow, decentralised pipeline); it sets ``p`` and the modelled wall clock.
        stages: ``"intermediate"`` (default: the first and last stage, which hold the
            embedding and the LM head, never fail; every strategy, CheckFree included, can run
            on the same failures) or ``"all"`` (edge stages fail too: only checkfree+,
            checkpoint and redundant can recover those).
        events: explicit failures ``((step, stage), ...)`` replacing the random draws, for tests
            and demonstrations; ``step`` counts executed iterations from 0.
    """

    rate_percent: float = 10.0
    iteration_time_s: float = 60.0
    stages: str = "intermediate"
    events: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        owner = "FailureConfig"
        _finite(owner, "rate_percent", self.rate_percent, 0.0, 100.0)
        if self.rate_percent >= 100.0:
            raise LcscError(f"{owner}.rate_percent: must be below 100, got {self.rate_percent}")
        _finite(owner, "iteration_time_s", self.iteration_time_s, 0.0)
        if self.iteration_time_s <= 0:
            raise LcscError(f"{owner}.iteration_time_s: must be positive, got 0")
        if self.stages not in FAILING_STAGES:
            raise LcscError(f"{owner}.stages: must be one of {FAILING_STAGES}, got {self.stages!r}")
        if self.events is not None:
            events = tuple(tuple(e) for e in self.events)
            for e in events:
                if len(e) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in e):
                    raise LcscError(
                        f"{owner}.events: expected (step, stage) integer pairs, got {e}"
                    )
                if e[0] < 0 or e[1] < 0:
                    raise LcscError(f"{owner}.events: steps and stages are >= 0, got {e}")
            object.__setattr__(self, "events", events)


@dataclass(frozen=True)
class TrainConfig:
    """One pipeline-parallel training run with failures and a recovery strategy.

    Attributes:
        model: the model and its split into stages.
        failures: the failure model.
        strategy: one of :data:`STRATEGIES`.
        iterations: training iterations to complete (rolled-back iterations are redone on top).
        batch_size: sequences per iteration, split into ``micro_batches`` equal micro-batches
            (GPipe: all forwards, then all backwards, then one optimizer step per stage).
        lr, warmup, min_lr_ratio: AdamW learning rate; linear warm-up over ``warmup`` iterations,
            then cosine decay to ``min_lr_ratio * lr`` at ``iterations``.
        weight_decay: AdamW decoupled weight decay.
        clip_norm: each stage clips its own gradient norm to this (CheckFree's weights are the
            clipped norms).
        seed: fixes the initialisation, the batches and the failures (separate streams).
        checkpoint_interval: ``checkpoint`` strategy: save every this many iterations.
        checkpoint_save_s: modelled seconds per checkpoint save (snapshot traffic); 0 by default.
        redundant_time_factor: ``redundant`` strategy: modelled iteration-time factor of computing
            each stage twice (151 s / 91 s in the paper's table).
        recovery_lr_factor: a stage rebuilt from its neighbours trains at this times the
            scheduled learning rate from then on (CheckFree: 1.1).
        eval_every: evaluate the validation loss every this many executed iterations (and at
            the start and the end).
        eval_batches: validation batches of ``batch_size`` sequences (a fixed set).
        corpus_bytes: cap on the standard-library text read as the corpus.
        val_fraction: share of the corpus held out for validation.
        processes: one OS process per stage on torch.distributed (gloo on CPU, NCCL on CUDA)
            instead of all stages in this process.
        device: ``"cpu"`` or ``"cuda"``.
        timeout_s: multi-process mode: give up when nothing happens for this long.
        snapshot_dir: if set, every stage writes its state around each failure
            (``step<k>-before``/``-lost``/``-after``) and at the end (``final``), for tests.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    failures: FailureConfig = field(default_factory=FailureConfig)
    strategy: str = "checkfree"
    iterations: int = 300
    batch_size: int = 8
    micro_batches: int = 2
    lr: float = 3e-3
    warmup: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    seed: int = 0
    checkpoint_interval: int = 50
    checkpoint_save_s: float = 0.0
    redundant_time_factor: float = 151.0 / 91.0
    recovery_lr_factor: float = 1.1
    eval_every: int = 25
    eval_batches: int = 4
    corpus_bytes: int = 4_000_000
    val_fraction: float = 0.1
    processes: bool = False
    device: str = "cpu"
    timeout_s: float = 300.0
    snapshot_dir: str | None = None

    def __post_init__(self) -> None:
        owner = "TrainConfig"
        if not isinstance(self.model, ModelConfig):
            raise LcscError(f"{owner}.model: expected a ModelConfig, got {self.model!r}")
        if not isinstance(self.failures, FailureConfig):
            raise LcscError(f"{owner}.failures: expected a FailureConfig, got {self.failures!r}")
        if self.strategy not in STRATEGIES:
            raise LcscError(
                f"{owner}.strategy: must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )
        for name in ("iterations", "batch_size", "micro_batches", "checkpoint_interval"):
            _positive_int(owner, name, getattr(self, name))
        for name in ("eval_every", "eval_batches"):
            _positive_int(owner, name, getattr(self, name))
        _positive_int(owner, "warmup", self.warmup, 0)
        _positive_int(owner, "seed", self.seed, 0)
        _positive_int(owner, "corpus_bytes", self.corpus_bytes, 16 * 1024)
        if self.batch_size % self.micro_batches:
            raise LcscError(
                f"{owner}.micro_batches: must divide batch_size ({self.batch_size}),"
                f" got {self.micro_batches}"
            )
        _finite(owner, "lr", self.lr, 0.0)
        _finite(owner, "min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _finite(owner, "weight_decay", self.weight_decay, 0.0)
        _finite(owner, "clip_norm", self.clip_norm, 0.0)
        if self.clip_norm <= 0:
            raise LcscError(f"{owner}.clip_norm: must be positive, got {self.clip_norm}")
        _finite(owner, "checkpoint_save_s", self.checkpoint_save_s, 0.0)
        _finite(owner, "redundant_time_factor", self.redundant_time_factor, 1.0)
        _finite(owner, "recovery_lr_factor", self.recovery_lr_factor, 0.0)
        _finite(owner, "val_fraction", self.val_fraction, 0.01, 0.5)
        _finite(owner, "timeout_s", self.timeout_s, 1.0)
        if self.device not in DEVICES:
            raise LcscError(f"{owner}.device: must be one of {DEVICES}, got {self.device!r}")
        if self.strategy == "checkfree+":
            if self.model.stages < 4:
                raise LcscError(
                    f"{owner}.strategy: checkfree+ swaps stages 1<->2 and S-1<->S; the two"
                    f" pairs overlap unless S >= 4, got {self.model.stages} stages"
                )
            if self.micro_batches < 2:
                raise LcscError(
                    f"{owner}.micro_batches: checkfree+ runs half the micro-batches in swapped"
                    f" order, so it needs at least 2, got {self.micro_batches}"
                )
        if self.failures.events is not None:
            for _step, stage in self.failures.events:
                if stage >= self.model.stages:
                    raise LcscError(
                        f"{owner}.failures.events: stage {stage} does not exist"
                        f" ({self.model.stages} stages)"
                    )

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.micro_batches

"""Frozen, validated settings of a CheckFree run: the model, the failures and the training.

Every field is checked once, here, when the config is built (with :mod:`lcsc.config`, the one
validation mechanism of the repository); a bad value raises :class:`~lcsc.errors.LcscError`
naming the field. Nothing downstream re-validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lcsc.config import Config, boolean, choice, integer, real

#: Recovery strategies: CheckFree and CheckFree+, the two classic baselines and three ablations
#: of the CheckFree recovery formula (copy the previous stage, plain average, random weights).
STRATEGIES = ("checkfree", "checkfree+", "checkpoint", "redundant", "copy", "uniform", "random")
#: Strategies that rebuild a lost stage from its neighbours' weights (CheckFree's constraints:
#: no edge stage, no two adjacent stages lost in the same iteration).
NEIGHBOUR_STRATEGIES = ("checkfree", "copy", "uniform", "random")
FAILING_STAGES = ("intermediate", "all")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ModelConfig(Config):
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
        self.check("stages", integer)
        msg = "must be >= 3: CheckFree needs at least 3 pipeline stages (an intermediate stage"
        self.require(self.stages >= 3, "stages", msg + " has two neighbours)", self.stages)
        for name in ("layers_per_stage", "dim", "heads", "seq_len", "vocab"):
            self.check(name, integer, 1)
        even = self.dim % self.heads == 0 and (self.dim // self.heads) % 2 == 0
        msg = f"must divide dim ({self.dim}) into an even head width (rotary positions)"
        self.require(even, "heads", msg, self.heads)
        self.check("mlp_hidden", integer, 1, optional=True)
        self.check("init_std", real, 0.0)

    @property
    def hidden(self) -> int:
        """The SwiGLU hidden width."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return -(-8 * self.dim // 48) * 16  # ceil(8d / 3 / 16) * 16


@dataclass(frozen=True)
class FailureConfig(Config):
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
        self.check("rate_percent", real, 0.0, below=100.0)
        self.check("iteration_time_s", real, above=0.0)
        self.check("stages", choice, FAILING_STAGES)
        if self.events is not None:
            pairs = tuple(tuple(e) for e in self.events)
            for e in pairs:
                ok = len(e) == 2 and all(not isinstance(v, bool) and isinstance(v, int) for v in e)
                self.require(ok and min(e) >= 0, "events", "must be (step, stage) pairs >= 0", e)
            object.__setattr__(self, "events", pairs)


@dataclass(frozen=True)
class TrainConfig(Config):
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
        self.require(isinstance(self.model, ModelConfig), "model", "must be a ModelConfig")
        self.require(
            isinstance(self.failures, FailureConfig), "failures", "must be a FailureConfig"
        )
        self.check("strategy", choice, STRATEGIES)
        for name in ("iterations", "batch_size", "micro_batches", "checkpoint_interval"):
            self.check(name, integer, 1)
        self.check("eval_every", integer, 1)
        self.check("eval_batches", integer, 1)
        self.check("warmup", integer, 0)
        self.check("seed", integer, 0)
        self.check("corpus_bytes", integer, 16 * 1024)
        msg = f"must divide batch_size ({self.batch_size})"
        self.require(
            self.batch_size % self.micro_batches == 0, "micro_batches", msg, self.micro_batches
        )
        self.check("lr", real, 0.0)
        self.check("min_lr_ratio", real, 0.0, 1.0)
        self.check("weight_decay", real, 0.0)
        self.check("clip_norm", real, above=0.0)
        self.check("checkpoint_save_s", real, 0.0)
        self.check("redundant_time_factor", real, 1.0)
        self.check("recovery_lr_factor", real, 0.0)
        self.check("val_fraction", real, 0.01, 0.5)
        self.check("timeout_s", real, 1.0)
        self.check("processes", boolean)
        self.check("device", choice, DEVICES)
        self._check_strategy_fits()

    def _check_strategy_fits(self) -> None:
        if self.strategy == "checkfree+":
            msg = "checkfree+ swaps stages 1<->2 and S-1<->S; the two pairs overlap unless S >= 4"
            self.require(self.model.stages >= 4, "strategy", msg, self.strategy)
            msg = "checkfree+ runs half the micro-batches in swapped order, so it needs >= 2"
            self.require(self.micro_batches >= 2, "micro_batches", msg, self.micro_batches)
        for _step, stage in self.failures.events or ():
            msg = f"stage {stage} does not exist ({self.model.stages} stages)"
            self.require(stage < self.model.stages, "failures", msg, self.failures.events)

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.micro_batches


@dataclass(frozen=True)
class LaunchConfig(Config):
    """Where this launcher stands in a multi-machine run (torchrun's names).

    Every machine runs one launcher with the same :class:`TrainConfig`; launcher
    ``node_rank`` 0 hosts the ``torch.distributed.TCPStore`` at ``rdzv_endpoint`` that all
    processes meet at (the job ends if it is lost), the others connect to it. Stage ``i``
    first runs on launcher ``i % nnodes``.

    Attributes:
        nnodes: launchers in the run.
        node_rank: this launcher, in ``[0, nnodes)``.
        rdzv_endpoint: ``HOST:PORT`` of the store (launcher 0 listens there).
        heartbeat_timeout_s: a launcher silent this long is taken as lost with its stages.
        rejoin_wait_s: how long a lost stage waits for its launcher to come back (restarted)
            before another live launcher hosts its replacement.
    """

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = "127.0.0.1:29500"
    heartbeat_timeout_s: float = 10.0
    rejoin_wait_s: float = 30.0

    def __post_init__(self) -> None:
        self.check("nnodes", integer, 1)
        self.check("node_rank", integer, 0)
        msg = f"must be in [0, nnodes) = [0, {self.nnodes})"
        self.require(self.node_rank < self.nnodes, "node_rank", msg, self.node_rank)
        host, _, port = str(self.rdzv_endpoint).rpartition(":")
        ok = bool(host) and port.isdigit() and 0 < int(port) < 65536
        self.require(ok, "rdzv_endpoint", "must be HOST:PORT", self.rdzv_endpoint)
        self.check("heartbeat_timeout_s", real, above=0.0)
        self.check("rejoin_wait_s", real, 0.0)

    @property
    def host(self) -> str:
        return str(self.rdzv_endpoint).rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(str(self.rdzv_endpoint).rpartition(":")[2])

"""Training loops for diffusion (EDM), consistency training (iCT) and consistency distillation,
recording the dense trajectory LCSC searches over.

Every run writes, in its output directory ``OUT``::

    OUT/trajectory/         the Recorder directory: step-<k>.safetensors every record_every steps
                            (step 0 = the initialisation) and trajectory.json
    OUT/ema.safetensors     the per-iteration EMA of the weights, rate ema_rate, started at step 0
    OUT/final.safetensors   the raw weights after the last iteration
    OUT/train_log.jsonl     one line per log_every steps: step, mean loss, it/s
    OUT/train_config.json   the TrainConfig

All weight files carry the same ``lcsc_metadata`` (see :mod:`lcsc.reference.generative.io`),
so any of them, or ``Trajectory.open(OUT / "trajectory").metadata``, rebuilds the network. A
seed fixes the initialisation, the batches, the noise and dropout: same seed, same losses and
weights.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcsc.atomic import write_json
from lcsc.errors import LcscError
from lcsc.progress import Progress, report
from lcsc.reference.generative.data import Dataset, load_dataset
from lcsc.reference.generative.edm import Denoiser
from lcsc.reference.generative.io import load_model, make_metadata, save_model
from lcsc.reference.generative.losses import (
    consistency_loss,
    ct_num_levels,
    discretisation,
    edm_loss,
)
from lcsc.reference.generative.networks import build_model
from lcsc.reference.generative.schedules import (
    AdamMomentum,
    pair_probabilities,
    sample_sigma,
)
from lcsc.reference.generative.train_config import TrainConfig
from lcsc.trajectory import Recorder, layout

TRAJECTORY_DIR = "trajectory"
EMA_FILE = "ema.safetensors"
FINAL_FILE = "final.safetensors"
LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.json"

LossFn = Callable[[int, torch.Tensor, torch.Generator], torch.Tensor]
# watch(step, model, ema): the live models, in training mode; do not modify them
WatchCallback = Callable[[int, Denoiser, Denoiser], None]


@dataclass
class TrainResult:
    """What a run returns: the final raw model, its EMA, the per-iteration losses and speed."""

    model: Denoiser
    ema: Denoiser
    losses: np.ndarray  # (iterations,)
    seconds: float  # the training loop alone, without setup and final saving
    out: Path

    @property
    def its_per_second(self) -> float:
        return len(self.losses) / self.seconds if self.seconds > 0 else float("inf")


def resolve_teacher(teacher: str | Path) -> Path:
    """A dm output directory -> its ``ema.safetensors``; a file -> itself."""
    path = Path(teacher)
    if path.is_dir():
        path = path / EMA_FILE
    if not path.is_file():
        raise LcscError(f"{teacher}: no teacher model (expected a dm run directory or a file)")
    return path


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    data: Dataset | None = None,
    progress: Progress | None = None,
    watch: WatchCallback | None = None,
) -> TrainResult:
    """Train as ``config`` says, recording the trajectory and saving the models in ``out``.

    Args:
        config: the run.
        out: the output directory (created; must not already hold a trajectory).
        data: the training set; None loads ``config.data`` (its training split).
        progress: called as ``progress("train", step, iterations, loss=loss)`` after every
            iteration (steps 1..iterations).
        watch: called as ``watch(step, model, ema)`` after every iteration, e.g. to evaluate
            the EMA during training (its time counts in ``TrainResult.seconds``).

    Raises:
        LcscError: bad data, teacher or output directory, or a diverging (non-finite) loss.
    """
    out = Path(out)
    traj_dir = out / TRAJECTORY_DIR
    if traj_dir.is_dir() and any(layout.recorded_files(traj_dir)):
        raise LcscError(f"{out}: already holds a training run; choose another output directory")
    if data is None:
        data = load_dataset(config.data, "train", test_fraction=config.test_fraction)
    if data.spec.shape != config.model.data_shape:
        raise LcscError(
            f"{config.data}: samples have shape {data.spec.shape}, the model expects"
            f" {config.model.data_shape}"
        )
    teacher = _load_teacher(config) if config.kind == "cd" else None
    training = config.to_dict()
    training.pop("model")
    if teacher is not None:
        training["teacher"] = str(resolve_teacher(config.teacher or "").resolve())
    metadata = make_metadata(config.model, data.spec, training)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_FILE, config.to_dict())

    with torch.random.fork_rng(devices=[]):  # seed init and dropout without touching the caller
        torch.manual_seed(config.seed)
        model = build_model(config.model)
        ema = copy.deepcopy(model).requires_grad_(False)
        g = torch.Generator().manual_seed(config.seed)
        opt = _adam(model, config)
        with Recorder(
            traj_dir, config.record_every, config.keep, metadata, compact=config.compact
        ) as rec:
            rec.update(model, 0)
            update = _Update(config, model, ema, opt, make_loss(config, model, teacher))
            losses, seconds = _loop(update, rec, data, g, out / LOG_FILE, progress, watch)
    save_model(out / EMA_FILE, ema, metadata, step=config.iterations)
    save_model(out / FINAL_FILE, model, metadata, step=config.iterations)
    model.eval()
    ema.eval()
    return TrainResult(model, ema, losses, seconds, out)


def _adam(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": config.betas}
    try:  # the fused kernel is ~20% faster on CPU for small models (torch >= 2.4)
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), **kwargs)


def _load_teacher(config: TrainConfig) -> Denoiser:
    path = resolve_teacher(config.teacher or "")
    loaded = load_model(path)
    if loaded.config.parametrisation != "dm":
        raise LcscError(f"{path}: the teacher must be a diffusion model (lcsc train dm)")
    if loaded.config.data_shape != config.model.data_shape:
        raise LcscError(
            f"{path}: the teacher's data shape {loaded.config.data_shape} differs from the"
            f" student's {config.model.data_shape}"
        )
    return loaded.model.requires_grad_(False)


def make_loss(config: TrainConfig, model: Denoiser, teacher: Denoiser | None) -> LossFn:
    """The kind's loss of a batch at 0-based iteration ``k``: ``loss_fn(k, y, g)``.

    Built once per run (as EDM2's training loop builds its ``loss_fn``); the noise curriculum,
    when on, tilts the noise-level distribution of iteration ``k``.
    """
    p_mean, p_std = config.noise_distribution
    curriculum, k_total = config.noise_curriculum, config.iterations

    def easy(k: int) -> tuple[float, float] | None:  # (sigma_easy, tilt) of iteration k
        return None if curriculum is None else (curriculum.sigma_easy, curriculum.tilt(k, k_total))

    def dm_loss(k: int, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        e = easy(k)
        sigma = None if e is None else sample_sigma(len(y), g, p_mean, p_std, *e)
        sigma_data = config.model.sigma_data
        return edm_loss(model, y, g, sigma_data=sigma_data, p_mean=p_mean, p_std=p_std, sigma=sigma)

    def cm_loss(k: int, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n_levels = (
            ct_num_levels(k, k_total, config.ct_s0, config.ct_s1)
            if config.kind == "ct"
            else config.cd_levels
        )
        levels, probs = discretisation(
            n_levels, config.model.sigma_min, config.sigma_max, config.rho, p_mean, p_std
        )
        e = easy(k)
        if e is not None:
            probs = pair_probabilities(levels, p_mean, p_std, *e)
        return consistency_loss(
            model, y, g, levels, probs, teacher=teacher, distance=config.distance
        )

    return dm_loss if config.kind == "dm" else cm_loss


class _Update:
    """One iteration: learning rate (warm-up, momentum decay), loss, Adam step, EMA update."""

    def __init__(
        self,
        config: TrainConfig,
        model: Denoiser,
        ema: Denoiser,
        opt: torch.optim.Optimizer,
        loss_fn: LossFn,
    ) -> None:
        self.config, self.model, self.ema, self.opt = config, model, ema, opt
        self.loss_fn = loss_fn
        decay = config.momentum_decay
        self.momentum = (
            None if decay is None else AdamMomentum(decay, config.iterations, config.betas)
        )
        self.params, self.ema_params = list(model.parameters()), list(ema.parameters())

    def __call__(self, k: int, y: torch.Tensor, g: torch.Generator) -> float:
        config, step = self.config, k + 1
        lr = config.lr_at(step)
        if self.momentum is not None:
            self.momentum.apply(k, self.opt, lr)
        elif config.warmup or config.lr_final is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr
        loss = self.loss_fn(k, y, g)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():  # ema <- rate ema + (1 - rate) theta, every iteration
            torch._foreach_lerp_(self.ema_params, self.params, 1.0 - config.ema_rate)
        return loss.item()


def _loop(
    update: _Update,
    rec: Recorder,
    data: Dataset,
    g: torch.Generator,
    log_path: Path,
    progress: Progress | None,
    watch: WatchCallback | None,
) -> tuple[np.ndarray, float]:
    config, model = update.config, update.model
    k_total, every = config.iterations, config.log_every
    losses = np.empty(k_total)
    model.train()
    start = last_time = time.perf_counter()
    with open(log_path, "w") as log:
        for k in range(k_total):
            step = k + 1
            y = data.x[torch.randint(len(data), (config.batch_size,), generator=g)]
            value = update(k, y, g)
            rec.update(model, step)
            if not math.isfinite(value):
                raise LcscError(f"training diverged at step {step} (loss {value}); try a lower lr")
            losses[k] = value
            report(progress, "train", step, k_total, loss=value)
            if watch is not None:
                watch(step, model, update.ema)
            if step % every == 0 or step == k_total:
                now = time.perf_counter()
                span = step - (step - 1) // every * every
                line = {
                    "step": step,
                    "loss": float(losses[step - span : step].mean()),
                    "it_s": round(span / max(now - last_time, 1e-9), 2),
                }
                log.write(json.dumps(line) + "\n")
                log.flush()
                last_time = now
    return losses, time.perf_counter() - start

"""A ready objective for diffusers ``UNet2DModel`` runs: FD of samples from fixed noise.

::

    lcsc search out/ --component unet \\
        --objective lcsc.integrations.diffusers_objective:unet_fd \\
        --objective-arg run=out --objective-arg reference=images/ ...

Needs ``pip install 'lcsc[diffusers]'``; diffusers is imported when the objective is built, not
when this module is imported. Configs are read from local files only (nothing is downloaded).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lcsc.errors import LcscError
from lcsc.metrics import compute_features
from lcsc.metrics.reference_files import load_reference
from lcsc.objectives.features import load_extractor
from lcsc.objectives.sample_fd import SampleFD, fixed_noise
from lcsc.trajectory.sources import find_source

# Deterministic samplers only: the search must see the same score for the same weights.
SCHEDULERS = {"ddim": "DDIMScheduler", "dpm-solver": "DPMSolverMultistepScheduler"}
_SCHEDULER_CONFIG = "scheduler_config.json"


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError as exc:
        raise LcscError(
            f"unet_fd needs the package 'diffusers': pip install 'lcsc[diffusers]' ({exc})"
        ) from exc
    return diffusers


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LcscError(f"{path}: unreadable {what}: {exc}") from exc
    if not isinstance(config, dict):
        raise LcscError(f"{path}: {what} is not a JSON object")
    return config


def load_unet(run: str, component: str = "unet") -> torch.nn.Module:
    """A ``UNet2DModel`` built from the ``config.json`` of ``component`` in ``run``: a run folder
    (its last ``checkpoint-<step>/``), one checkpoint folder, a component folder or the
    ``config.json`` itself. Its weights are whatever the objective is given later."""
    p = Path(run)
    if p.is_file() and p.suffix == ".json":
        config_path: Path | None = p
    elif (p / "config.json").is_file():
        config_path = p / "config.json"
    elif p.is_dir():
        config_path = find_source([p], component).config
    else:
        raise LcscError(f"run {p}: no such folder or config.json")
    if config_path is None:
        raise LcscError(
            f"run {p}: no config.json of component {component!r}"
            f" (expected checkpoint-<step>/{component}/config.json)"
        )
    config = _read_json(config_path, "UNet config")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise LcscError(
            f"{config_path}: is a {config['_class_name']} config; unet_fd samples an"
            " unconditional UNet2DModel"
        )
    unet_cls = _diffusers().UNet2DModel
    try:
        return unet_cls.from_config(config).eval().requires_grad_(False)
    except Exception as exc:  # diffusers validates the config in the constructor
        raise LcscError(f"{config_path}: not a UNet2DModel config: {exc}") from exc


def _scheduler_config_file(path: Path) -> Path:
    for candidate in (path, path / _SCHEDULER_CONFIG, path / "scheduler" / _SCHEDULER_CONFIG):
        if candidate.is_file():
            return candidate
    raise LcscError(f"{path}: no {_SCHEDULER_CONFIG} (nor scheduler/{_SCHEDULER_CONFIG})")


def load_scheduler(scheduler: str = "ddim", config: str = "") -> Any:
    """A deterministic diffusers scheduler: ``scheduler`` is ``ddim`` (``DDIMScheduler``, eta 0)
    or ``dpm-solver`` (``DPMSolverMultistepScheduler``), or a folder / ``scheduler_config.json``
    of one of them. ``config``: a folder or file with the training noise schedule (e.g. the
    ``DDPMScheduler`` a pipeline saved), taken over by the named sampler; default: diffusers'
    defaults (1000 steps, linear betas, as ``DDPMScheduler()`` in diffusers' example scripts)."""
    names = {**{v: v for v in SCHEDULERS.values()}, **SCHEDULERS}
    settings: dict[str, Any] = {}
    if scheduler in names:
        class_name = names[scheduler]
        if config:
            settings = _read_json(_scheduler_config_file(Path(config)), "scheduler config")
    elif Path(scheduler).exists():
        if config:
            raise LcscError(
                f"scheduler_config={config} goes with scheduler=ddim or dpm-solver, not with a"
                f" scheduler folder ({scheduler})"
            )
        path = _scheduler_config_file(Path(scheduler))
        settings = _read_json(path, "scheduler config")
        class_name = str(settings.get("_class_name"))
        if class_name not in SCHEDULERS.values():
            raise LcscError(
                f"{path}: a {class_name} config; the search needs a deterministic sampler: pass"
                f" scheduler=ddim or scheduler=dpm-solver with scheduler_config={scheduler}"
            )
    else:
        raise LcscError(
            f"scheduler {scheduler!r}: expected ddim, dpm-solver (or"
            f" {', '.join(SCHEDULERS.values())}) or a folder holding {_SCHEDULER_CONFIG}"
        )
    cls = getattr(_diffusers(), class_name)
    return cls.from_config(settings)


class UNetSampler:
    """``state_dict -> samples`` of a diffusers ``UNet2DModel`` from fixed noise.

    Runs ``steps`` scheduler steps from ``noise`` (N, C, H, W) in batches of ``batch_size``;
    returns float32 (N, C, H, W) clamped to ``[-1, 1]`` as diffusers' pipelines clamp images.
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler: Any,
        noise: torch.Tensor,
        steps: int,
        batch_size: int = 250,
        device: str | torch.device = "cpu",
    ) -> None:
        if steps < 1 or batch_size < 1:
            raise LcscError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
        self.device = torch.device(device)
        self.unet = unet.to(self.device)
        self.scheduler, self.noise = scheduler, noise
        self.steps, self.batch_size = steps, batch_size

    def __len__(self) -> int:
        return len(self.noise)

    def shard(self, start: int, stop: int) -> UNetSampler:
        """The sampler of rows ``[start, stop)`` of the same noise (the UNet and scheduler
        shared): each process's share under ``lcsc search --split samples``."""
        part = copy.copy(self)
        part.noise = self.noise[start:stop]
        return part

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
        try:
            self.unet.load_state_dict(dict(state_dict))
        except RuntimeError as exc:
            why = " ".join(str(exc).split())  # torch's message spans lines
            raise LcscError(f"the weights do not fit the UNet config: {why}") from exc
        with torch.no_grad():
            out = [self._sample(z) for z in self.noise.split(self.batch_size)]
        return torch.cat(out).clamp(-1.0, 1.0)

    def _sample(self, z: torch.Tensor) -> torch.Tensor:
        s = self.scheduler
        s.set_timesteps(self.steps, device=self.device)  # also resets multistep solver state
        x = z.to(self.device) * s.init_noise_sigma
        for t in s.timesteps:
            eps = self.unet(s.scale_model_input(x, t), t).sample
            x = s.step(eps, t, x).prev_sample
        return x.to("cpu", torch.float32)


def _ints(**values: str) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in values.items()}
    except ValueError as exc:
        raise LcscError(f"{', '.join(values)} must be integers: {exc}") from exc


def unet_fd(
    run: str,
    reference: str,
    component: str = "unet",
    scheduler: str = "ddim",
    scheduler_config: str = "",
    steps: str = "20",
    samples: str = "1000",
    batch_size: str = "250",
    noise_seed: str = "0",
    features: str = "digits",
    inception_weights: str = "",
    reference_key: str = "",
    reference_cache: str = "",
    device: str = "cpu",
) -> SampleFD:
    """FD of a diffusers UNet2DModel's samples from fixed noise (``lcsc search --objective
    lcsc.integrations.diffusers_objective:unet_fd``). Arguments (``--objective-arg KEY=VALUE``):

    run                the training output folder (the config.json of checkpoint-<step>/COMPONENT/),
                       a checkpoint or component folder, or the config.json file
    reference          the real data: a folder of images, or an .npz with mu/sigma (pytorch-fid),
                       mean/cov (lcsc) or raw features (N, D) under `features` or reference_key
    component          the UNet's subfolder (default unet; e.g. unet_ema)
    scheduler          ddim (default, eta 0) or dpm-solver (DPMSolverMultistepScheduler), or a
                       folder with a scheduler_config.json of one of them
    scheduler_config   folder or scheduler_config.json of the training noise schedule (e.g. the
                       pipeline's scheduler/); default diffusers' (1000 steps, linear betas)
    steps              inference steps per sample (default 20)
    samples            number of samples from fixed search noise (default 1000)
    batch_size         samples per UNet batch (default 250)
    noise_seed         seed of the fixed noise (default 0)
    features           digits (default), digits-alt, inception, or MODULE:ATTR / FILE.py:ATTR
                       (an nn.Module, or a callable returning one)
    inception_weights  local Inception-v3 weights file for features=inception
    reference_key      the .npz array of raw reference features
    reference_cache    folder caching an image folder's statistics (default: no cache)
    device             cpu (default) or cuda, for the UNet and the extractor
    """
    n = _ints(steps=steps, samples=samples, batch_size=batch_size, noise_seed=noise_seed)
    unet = load_unet(run, component)
    sched = load_scheduler(scheduler, scheduler_config)
    size = unet.config.sample_size
    shape = (unet.config.in_channels, *((size, size) if isinstance(size, int) else size))
    noise = fixed_noise(n["samples"], shape, n["noise_seed"], "search")
    sampler = UNetSampler(unet, sched, noise, n["steps"], n["batch_size"], device)
    extractor = load_extractor(features, inception_weights).to(device)
    ref = load_reference(
        reference,
        extractor,
        key=reference_key or None,
        channels=shape[0],
        cache_dir=reference_cache or None,
        batch_size=n["batch_size"],
        device=device,
    )
    dim = compute_features(extractor, noise[:2].clamp(-1.0, 1.0), device=device).shape[1]
    if dim != ref.dim:
        raise LcscError(
            f"{reference}: reference features have {ref.dim} dimensions, features={features}"
            f" gives {dim}"
        )
    return SampleFD(sampler, extractor, ref, batch_size=n["batch_size"])

"""``lcsc train`` and ``lcsc sample``: make the trajectories LCSC searches, and samples."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lcsc.cli.common import add_threads
from lcsc.errors import LcscError

DEFAULT_NFE = {"cm": 1, "dpmpp": 15, "heun": 35, "euler": 35}
# schedule field -> its `lcsc train` flag
CURRICULUM_FLAGS = {
    "sigma_easy": "--curriculum-sigma",
    "tilt_start": "--curriculum-tilt-start",
    "tilt_end": "--curriculum-tilt-end",
    "fraction": "--curriculum-fraction",
    "pace": "--curriculum-pace",
}
MOMENTUM_FLAGS = {
    "start": "--momentum-start",
    "end": "--momentum-end",
    "fraction": "--momentum-fraction",
    "pace": "--momentum-pace",
    "compensation": "--momentum-compensation",
}


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise LcscError(message)


def _schedule(args: argparse.Namespace, enabled: str, cls: type, flags: dict[str, str]) -> Any:
    """The schedule ``cls`` from its flags, None when ``--<enabled>`` is not given."""
    given = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in flags.items()}
    given = {field: value for field, value in given.items() if value is not None}
    if not getattr(args, enabled.replace("-", "_")):
        if given:
            raise LcscError(f"{flags[next(iter(given))]} needs --{enabled}")
        return None
    return cls(**given)


def _train_config(args: argparse.Namespace, data_shape: tuple[int, ...]) -> Any:
    """Flags -> :class:`TrainConfig`; the config checks the values and names the field."""
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.schedules import MomentumDecay, NoiseCurriculum
    from lcsc.reference.generative.training import TrainConfig

    model = ModelConfig(
        kind=args.arch,
        data_shape=data_shape,
        parametrisation="dm" if args.kind == "dm" else "cm",
        dropout=args.dropout,
        width=args.width,
        depth=args.depth,
        channels=args.channels,
    )
    return TrainConfig(
        kind=args.kind,
        model=model,
        data=args.data,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_final=args.lr_final,
        record_every=args.record_every,
        keep=args.keep,
        compact=args.compact,
        ema_rate=args.ema_rate,
        seed=args.seed,
        teacher=None if args.teacher is None else str(args.teacher),
        noise_curriculum=_schedule(args, "noise-curriculum", NoiseCurriculum, CURRICULUM_FLAGS),
        momentum_decay=_schedule(args, "momentum-decay", MomentumDecay, MOMENTUM_FLAGS),
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from lcsc.cli.common import StageBars
    from lcsc.reference.generative.data import load_dataset
    from lcsc.reference.generative.networks import num_parameters
    from lcsc.reference.generative.training import train

    data = load_dataset(args.data, "train")
    config = _train_config(args, data.spec.shape)
    with StageBars(prefix=f"{args.kind} ") as bars:
        result = train(config, args.out, data=data, progress=None if args.quiet else bars)
    print(
        f"wrote {args.out}: trajectory/ (every {args.record_every} steps), ema.safetensors,"
        f" final.safetensors; {num_parameters(result.model)} parameters,"
        f" {result.its_per_second:.1f} it/s, final loss {result.losses[-20:].mean():.4f}"
    )
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from lcsc.atomic import atomic_path
    from lcsc.reference.generative.data import to_original_units
    from lcsc.reference.generative.io import load_model
    from lcsc.reference.generative.samplers import sample

    _require(args.n >= 1, f"--n must be >= 1, got {args.n}")
    _require(args.seed >= 0, f"--seed must be >= 0, got {args.seed}")
    _require(
        args.batch_size is None or args.batch_size >= 1,
        f"--batch-size must be >= 1, got {args.batch_size}",
    )
    _require(args.nfe is None or args.nfe >= 1, f"--nfe must be >= 1, got {args.nfe}")
    loaded = load_model(args.checkpoint, device=args.device)
    kind = loaded.config.parametrisation
    sampler = args.sampler or ("cm" if kind == "cm" else "dpmpp")
    _require(
        (sampler == "cm") == (kind == "cm"),
        f"--sampler {sampler} does not fit {args.checkpoint}: it is a"
        f" {'consistency' if kind == 'cm' else 'diffusion'} model"
        f" (use --sampler {'cm' if kind == 'cm' else 'euler, heun or dpmpp'})",
    )
    nfe = args.nfe or DEFAULT_NFE[sampler]
    _require(
        sampler != "heun" or nfe % 2 == 1,
        f"--nfe {nfe}: Heun with n steps makes 2n - 1 evaluations, so --nfe must be odd",
    )
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.n, *loaded.config.data_shape, generator=g).to(args.device)
    x = sample(loaded.model, z, sampler, nfe, batch_size=args.batch_size, generator=g)
    if loaded.data is not None:
        out = to_original_units(x, loaded.data)
        units = f"original units [{loaded.data.low:g}, {loaded.data.high:g}]"
    else:
        out = x.cpu().numpy()
        units = "model space (the checkpoint has no data spec)"
    with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
        np.save(f, out)
    print(f"wrote {args.output}: {out.shape} samples ({sampler}, nfe {nfe}) in {units}")
    return 0


def _add_schedule_flags(p: argparse.ArgumentParser) -> None:
    from lcsc.reference.generative.schedules import COMPENSATIONS, MomentumDecay, NoiseCurriculum
    from lcsc.reference.generative.train_config import TrainConfig

    # Unset flags stay None, so that a flag without its --noise-curriculum is refused.
    nc, md = NoiseCurriculum, MomentumDecay
    c = p.add_argument_group(
        "noise curriculum (off by default; docs/fast_training.md)",
        "draw the easy noise levels sigma > SIGMA less and less often: the lognormal density is"
        " multiplied by min(1, SIGMA/sigma)^tilt, tilt ramping from START to END as"
        " START + min(1, k / (F*iterations))^P (END - START) at iteration k",
    )
    c.add_argument(
        "--noise-curriculum", action="store_true", help="train with the noise curriculum"
    )
    c.add_argument(
        "--curriculum-sigma",
        type=float,
        metavar="SIGMA",
        help=f"noise level (EDM sigma) above which levels count as easy (default: {nc.sigma_easy})",
    )
    c.add_argument(
        "--curriculum-tilt-start",
        type=float,
        metavar="START",
        help=f"tilt at the first iteration (default: {nc.tilt_start})",
    )
    c.add_argument(
        "--curriculum-tilt-end",
        type=float,
        metavar="END",
        help=f"tilt from F*iterations on (default: {nc.tilt_end})",
    )
    c.add_argument(
        "--curriculum-fraction",
        type=float,
        metavar="F",
        help=f"fraction of the iterations by which the tilt reaches END (default: {nc.fraction})",
    )
    c.add_argument(
        "--curriculum-pace",
        type=float,
        metavar="P",
        help=f"exponent of the ramp (1: linear; default: {nc.pace})",
    )
    m = p.add_argument_group(
        "momentum decay (off by default; docs/fast_training.md)",
        "Adam's beta1 ramps from START to END as START + min(1, k / (F*iterations))^P"
        " (END - START) at iteration k, the learning rate compensated",
    )
    m.add_argument("--momentum-decay", action="store_true", help="train with momentum decay")
    m.add_argument(
        "--momentum-start",
        type=float,
        metavar="START",
        help=f"Adam beta1 at the first iteration (default: the run's, {TrainConfig.betas[0]})",
    )
    m.add_argument(
        "--momentum-end",
        type=float,
        metavar="END",
        help=f"Adam beta1 from F*iterations on, 0 <= END <= START (default: {md.end})",
    )
    m.add_argument(
        "--momentum-fraction",
        type=float,
        metavar="F",
        help=f"fraction of the iterations by which beta1 reaches END (default: {md.fraction})",
    )
    m.add_argument(
        "--momentum-pace",
        type=float,
        metavar="P",
        help=f"exponent of the ramp (1: linear; default: {md.pace})",
    )
    m.add_argument(
        "--momentum-compensation",
        choices=COMPENSATIONS,
        help=f"how the learning rate compensates the lower beta1 (default: {md.compensation})",
    )


def register(sub: argparse._SubParsersAction) -> None:
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.train_config import TrainConfig

    p = sub.add_parser(
        "train", help="train a diffusion or consistency model, recording checkpoints"
    )
    p.add_argument(
        "kind",
        choices=("dm", "ct", "cd"),
        help="dm: EDM diffusion model; ct: consistency training (iCT); cd: consistency"
        " distillation from --teacher",
    )
    p.add_argument(
        "--data",
        default=TrainConfig.data,
        help="training data: 'digits' (sklearn's 8x8 digits), a .npz file or an image folder",
    )
    p.add_argument(
        "--iterations",
        type=int,
        required=True,
        metavar="N",
        help="training iterations, i.e. optimizer steps",
    )
    p.add_argument(
        "--record-every",
        type=int,
        default=TrainConfig.record_every,
        metavar="K",
        help="record a trajectory checkpoint every K iterations",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder: trajectory/, ema.safetensors, final.safetensors and the logs",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        metavar="DIR",
        help="cd only, and required there: a 'lcsc train dm' output folder (its"
        " ema.safetensors) or a model file (default: none)",
    )
    p.add_argument(
        "--keep",
        type=int,
        metavar="K",
        help="keep only the last K trajectory checkpoints (default: all)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=TrainConfig.batch_size,
        metavar="N",
        help="samples per iteration",
    )
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="Adam learning rate")
    p.add_argument(
        "--lr-final",
        type=float,
        metavar="LR",
        help="learning rate of the last iteration, in the same units as --lr (per Adam step):"
        " the lr follows a cosine from --lr down to LR (default: none, constant --lr)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TrainConfig.seed,
        metavar="N",
        help="seed of the initialisation, batches, noise and dropout",
    )
    p.add_argument(
        "--ema-rate",
        type=float,
        default=TrainConfig.ema_rate,
        metavar="RATE",
        help="EMA decay per iteration of the saved ema.safetensors, e.g. 0.999",
    )
    p.add_argument(
        "--arch",
        choices=("mlp", "unet"),
        default=ModelConfig.kind,
        help="network: a residual MLP on the flattened samples, or a U-Net for images",
    )
    p.add_argument(
        "--width", type=int, default=ModelConfig.width, metavar="N", help="MLP hidden width"
    )
    p.add_argument(
        "--depth", type=int, default=ModelConfig.depth, metavar="N", help="MLP residual blocks"
    )
    p.add_argument(
        "--channels",
        type=int,
        default=ModelConfig.channels,
        metavar="N",
        help="U-Net channels at the first resolution",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=ModelConfig.dropout,
        metavar="P",
        help="dropout probability inside the residual blocks",
    )
    p.add_argument(
        "--compact",
        action="store_true",
        help="record the trajectory as float16 deltas (about half the disk)",
    )
    add_threads(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_schedule_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sample", help="draw samples from a model file, in the data's units")
    p.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT.safetensors",
        help="a model written by lcsc train, merge or search (its metadata names the network)",
    )
    p.add_argument("--n", type=int, required=True, metavar="N", help="number of samples")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the initial noise")
    p.add_argument(
        "--sampler",
        choices=("euler", "heun", "dpmpp", "cm"),
        help="sampler (default: cm for a consistency model, dpmpp for a diffusion model)",
    )
    nfe = ", ".join(f"{name} {n}" for name, n in DEFAULT_NFE.items())
    p.add_argument(
        "--nfe",
        type=int,
        metavar="N",
        help=f"network evaluations per sample (default: {nfe})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="samples per network call; the samples do not depend on it (default: all at once)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda or cuda:1")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT.npy",
        help="the samples as a NumPy array of shape (N, *data shape)",
    )
    p.set_defaults(func=_cmd_sample)

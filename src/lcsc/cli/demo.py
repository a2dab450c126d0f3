"""``lcsc demo`` and ``lcsc evaluate``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from lcsc.cli.common import StageBars, add_threads
from lcsc.errors import LcscError
from lcsc.search import METHODS

# flags that map to DemoConfig fields, whose defaults are the flags' defaults
_DEMO_FIELDS = (
    "iterations",
    "budget",
    "method",
    "seed",
    "search_samples",
    "held_out_samples",
    "held_out_seeds",
    "penalty",
    "groups",
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from lcsc.reference.digits.demo import DemoConfig, run_demo
    from lcsc.search.distributed import is_leader, process_group_from_env

    config = DemoConfig(**{name: getattr(args, name) for name in _DEMO_FIELDS})
    if args.nproc < 1:
        raise LcscError(f"--nproc must be >= 1, got {args.nproc}")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lcsc-demo-"))
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.nproc > 1 and not under_torchrun:
        return _launch(args, out)
    with process_group_from_env(), StageBars() as bars:
        results = run_demo(config, out, bars if is_leader() else None)
    if results is None:  # another rank of the group: rank 0 reports
        return 0
    print((out / "report.md").read_text())
    fd, ratios = results["held_out_fd"], results["independent_ratios"]
    print(
        f"held-out FD: raw {fd['raw']:.3g}, EMA* {fd['ema_star']:.3g}, LCSC {fd['lcsc']:.3g};"
        f" LCSC/EMA* in the independent spaces: median {ratios['median']:.2f}"
        f" -- report, plots and models in {out}"
    )
    return 0


def _launch(args: argparse.Namespace, out: Path) -> int:
    """``lcsc demo`` again on ``args.nproc`` local processes under torchrun (gloo, 127.0.0.1)."""
    from lcsc.search.distributed import local_launcher

    flags = ["--out", str(out)]
    for name in (*_DEMO_FIELDS, "threads"):
        if getattr(args, name) is not None:
            flags += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    command = [*local_launcher(args.nproc), "-m", "lcsc", "demo", *flags]
    return subprocess.run(command, check=False).returncode


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lcsc.reference.digits.evaluation import HeldOutEvaluator
    from lcsc.reference.generative.generator import run_metadata
    from lcsc.reference.generative.io import load_model

    loaded = load_model(args.checkpoint)
    seeds = range(args.noise_seed, args.noise_seed + args.seeds)
    evaluate = HeldOutEvaluator(
        run_metadata(args.checkpoint), args.samples, seeds, args.sampler, args.nfe
    )
    held = evaluate(loaded.model.state_dict())
    floor = evaluate.scorer.floor
    if args.json:
        doc = {"held_out": held.to_dict(), "noise_floor": floor, "evaluation": evaluate.describe()}
        print(json.dumps(doc, indent=1))
        return 0
    print(f"# {evaluate.describe()}")
    print(f"{'metric':16s} {'mean':>10s} {'std':>10s} {'floor':>10s}")
    for name, mean in held.mean.items():
        print(f"{name:16s} {mean:10.4g} {held.std[name]:10.2g} {floor[name]:10.4g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from lcsc.reference.digits.demo import DemoConfig
    from lcsc.trajectory.groups import AUTO, NONE

    p = sub.add_parser(
        "demo",
        help="train, search and compare LCSC with EMA on digits",
        description="Train a consistency model on sklearn's digits, search LCSC coefficients on"
        " search noise and compare LCSC, EMA* and the raw weights on held-out noise; writes"
        " report.md, plots, results.json and the models.",
    )
    p.add_argument(
        "--out", metavar="DIR", help="folder for the report, plots and models (default: a temp dir)"
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=DemoConfig.iterations,
        metavar="N",
        help="training iterations, i.e. optimizer steps",
    )
    p.add_argument(
        "--budget",
        type=int,
        default=DemoConfig.budget,
        metavar="N",
        help="search budget, in objective evaluations",
    )
    p.add_argument(
        "--method",
        choices=sorted(METHODS),
        default=DemoConfig.method,
        help="search method; the default is the one docs/benchmarks.md measures",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DemoConfig.seed,
        metavar="N",
        help="seed of the training, the search and the first held-out noise",
    )
    p.add_argument(
        "--search-samples",
        type=int,
        default=DemoConfig.search_samples,
        metavar="N",
        help="samples generated for each search score",
    )
    p.add_argument(
        "--held-out-samples",
        type=int,
        default=DemoConfig.held_out_samples,
        metavar="N",
        help="samples generated per held-out noise seed",
    )
    p.add_argument(
        "--held-out-seeds",
        type=int,
        default=DemoConfig.held_out_seeds,
        metavar="N",
        help="held-out noise seeds; their spread gives the error bars",
    )
    p.add_argument(
        "--penalty",
        type=float,
        default=DemoConfig.penalty,
        metavar="LAMBDA",
        help="trust-region weight around EMA*, in FD units per unit of K * ||a - a0||^2"
        " (with G groups: the mean over the rows of the (G, K) matrix; 0: none);"
        " docs/benchmarks.md measures the default",
    )
    p.add_argument(
        "--groups",
        default=DemoConfig.groups or NONE,
        metavar="PATTERN[,PATTERN...]",
        help=f"one coefficient vector per group of parameters, as lcsc search --groups:"
        f" '{AUTO}' (one group per top-level module), comma-separated name patterns,"
        f" or '{NONE}' (one vector for all parameters); needs --method subspace or cmaes",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="spread the search's candidates over N local processes (torch.distributed, gloo on"
        " 127.0.0.1; the same results as one process). Same as"
        " torchrun --nproc-per-node N -m lcsc demo",
    )
    add_threads(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "evaluate",
        help="held-out scores of a digits checkpoint: FD, KID, precision, recall and the"
        " transfer report, with the noise floor",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT.safetensors",
        help="a digits model written by lcsc train, lcsc demo or lcsc merge (its run metadata"
        " names the data and the network)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=DemoConfig.held_out_samples,
        metavar="N",
        help="samples generated per held-out noise seed, as in the demo's held-out scores",
    )
    p.add_argument(
        "--noise-seed", type=int, default=0, metavar="N", help="the first held-out noise seed"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=DemoConfig.held_out_seeds,
        metavar="N",
        help="held-out noise seeds, from --noise-seed on; their spread gives the error bars",
    )
    p.add_argument("--json", action="store_true", help="print every value in full, as JSON")
    p.add_argument(
        "--sampler",
        choices=["cm", "euler", "heun", "dpmpp"],
        help="sampler (default: cm for a consistency model, heun for a diffusion model)",
    )
    p.add_argument("--nfe", type=int, default=1, metavar="N", help="network evaluations per sample")
    p.set_defaults(func=_cmd_evaluate)

"""``lcsc demo`` and ``lcsc evaluate``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lcsc.cli.common import StageBars, add_threads
from lcsc.search import DEFAULT_METHOD, METHODS


def _cmd_demo(args: argparse.Namespace) -> int:
    from lcsc.reference.digits.demo import DemoConfig, run_demo

    config = DemoConfig(
        iterations=args.iterations, budget=args.budget, method=args.method, seed=args.seed
    )
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lcsc-demo-"))
    with StageBars() as bars:
        results = run_demo(config, out, bars)
    print((out / "report.md").read_text())
    fd = results["held_out_fd"]
    print(
        f"held-out FD: raw {fd['raw']:.3g}, EMA* {fd['ema_star']:.3g}, LCSC {fd['lcsc']:.3g}"
        f" -- report, plots and models in {out}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lcsc.reference.digits.evaluation import HeldOutEvaluator
    from lcsc.reference.generative.generator import run_metadata
    from lcsc.reference.generative.io import load_model

    loaded = load_model(args.checkpoint)
    evaluate = HeldOutEvaluator(
        run_metadata(args.checkpoint), args.samples, args.noise_seed, args.sampler, args.nfe
    )
    metrics = evaluate(loaded.model.state_dict())
    for name, value in metrics.to_dict().items():
        print(f"{name:10s} {value:.6g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, search and compare LCSC with EMA on digits")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: a temp dir)")
    p.add_argument("--iterations", type=int, default=6000)
    p.add_argument("--budget", type=int, default=1000, help="search evaluations")
    p.add_argument("--method", choices=sorted(METHODS), default=DEFAULT_METHOD)
    p.add_argument("--seed", type=int, default=0)
    add_threads(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("evaluate", help="held-out FD, KID, precision and recall of a checkpoint")
    p.add_argument("checkpoint", metavar="CHECKPOINT.safetensors")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--sampler", choices=["cm", "euler", "heun", "dpmpp"])
    p.add_argument("--nfe", type=int, default=1)
    p.set_defaults(func=_cmd_evaluate)

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

# flags that map to DemoConfig fields; unset ones keep the field's default
_DEMO_FIELDS = (
    "iterations",
    "budget",
    "method",
    "seed",
    "search_samples",
    "held_out_samples",
    "held_out_seeds",
    "penalty",
)


def _cmd_demo(args: argparse.Namespace) -> int:
    from lcsc.reference.digits.demo import DemoConfig, run_demo
    from lcsc.search.distributed import is_leader, process_group_from_env

    given = {name: getattr(args, name) for name in _DEMO_FIELDS}
    config = DemoConfig(**{k: v for k, v in given.items() if v is not None})
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
    p = sub.add_parser("demo", help="train, search and compare LCSC with EMA on digits")
    p.add_argument("--out", metavar="DIR", help="where to write the report (default: a temp dir)")
    p.add_argument("--iterations", type=int, help="training iterations (default 6000)")
    p.add_argument("--budget", type=int, help="search evaluations (default 1000)")
    p.add_argument(
        "--method",
        choices=sorted(METHODS),
        help="search method (default evolutionary, as measured)",
    )
    p.add_argument("--seed", type=int, help="training, search and noise seed (default 0)")
    p.add_argument("--search-samples", type=int, help="samples per search score (default 2000)")
    p.add_argument(
        "--held-out-samples", type=int, help="samples per held-out noise seed (default 5000)"
    )
    p.add_argument("--held-out-seeds", type=int, help="held-out noise seeds (default 3)")
    p.add_argument(
        "--penalty",
        type=float,
        metavar="LAMBDA",
        help="trust-region penalty weight around EMA* (0: none; default: see docs/benchmarks.md)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="spread the search's candidates over N local processes (torch.distributed, gloo on"
        " 127.0.0.1; the same results as one process; default 1). Same as"
        " torchrun --nproc-per-node N -m lcsc demo",
    )
    add_threads(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "evaluate",
        help="held-out scores of a digits checkpoint: FD, KID, precision, recall and the"
        " transfer report, with the noise floor",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT.safetensors")
    p.add_argument("--samples", type=int, default=5000, help="samples per held-out noise seed")
    p.add_argument("--noise-seed", type=int, default=0, help="the first held-out noise seed")
    p.add_argument("--seeds", type=int, default=3, help="held-out noise seeds (error bars)")
    p.add_argument("--json", action="store_true", help="print every value in full, as JSON")
    p.add_argument("--sampler", choices=["cm", "euler", "heun", "dpmpp"])
    p.add_argument("--nfe", type=int, default=1)
    p.set_defaults(func=_cmd_evaluate)

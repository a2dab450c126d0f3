"""The ``checkfree`` command: pipeline training with stage failures and a recovery strategy.

``checkfree train`` is a thin layer over :func:`checkfree.train`. A bad configuration prints one
line naming the field at fault and exits with status 1, without a traceback.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from checkfree import FailureConfig, ModelConfig, TrainConfig, build_plan, train
    from checkfree.config import LaunchConfig
    from lcsc.cli.common import StageBars

    events = tuple(_parse_event(e) for e in args.fail_at) or None
    config = TrainConfig(
        model=ModelConfig(
            stages=args.stages,
            layers_per_stage=args.layers_per_stage,
            dim=args.dim,
            heads=args.heads,
            seq_len=args.seq_len,
        ),
        failures=FailureConfig(
            rate_percent=args.failure_rate,
            iteration_time_s=args.iteration_time,
            stages=args.failing_stages,
            events=events,
        ),
        strategy=args.strategy,
        iterations=args.iterations,
        batch_size=args.batch_size,
        micro_batches=args.micro_batches,
        lr=args.lr,
        seed=args.seed,
        checkpoint_interval=args.checkpoint_interval,
        eval_every=args.eval_every,
        processes=args.processes,
        device=args.device,
        timeout_s=args.timeout,
    )
    launch = None
    if args.nnodes is not None or args.rdzv_endpoint is not None:
        launch = LaunchConfig(
            nnodes=args.nnodes if args.nnodes is not None else 1,
            node_rank=args.node_rank,
            rdzv_endpoint=args.rdzv_endpoint or LaunchConfig.rdzv_endpoint,
            heartbeat_timeout_s=args.heartbeat_timeout,
            rejoin_wait_s=args.rejoin_wait,
        )
    build_plan(config)  # refuse unrecoverable failures before drawing a progress bar
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="checkfree-"))
    mode = f"{config.model.stages} processes" if config.processes else "1 process"
    if launch is not None:
        mode += f", launcher {launch.node_rank} of {launch.nnodes}"
    with StageBars(prefix=f"{config.strategy} ({mode}) ") as bars:
        result = train(config, out, bars, launch)
    s = result.summary()
    print(
        f"{config.strategy}: final validation loss {s['final_val_loss']:.4f},"
        f" {s['failed_stages']} stage failures, {s['lost_iterations']} iterations redone,"
        f" modelled wall clock {s['wall_clock_s'] / 3600:.2f} h"
        f" ({s['steps']} iterations x {s['step_time_s']:.1f} s) -- log in {out / 'log.jsonl'}"
    )
    return 0


def _parse_event(text: str) -> tuple[int, int]:
    from lcsc.errors import LcscError

    try:
        step, stage = (int(v) for v in text.split(":"))
    except ValueError:
        raise LcscError(f"--fail-at: expected STEP:STAGE (two integers), got {text!r}") from None
    return step, stage


def build_parser() -> argparse.ArgumentParser:
    from checkfree.config import (
        DEVICES,
        FAILING_STAGES,
        STRATEGIES,
        FailureConfig,
        LaunchConfig,
        ModelConfig,
        TrainConfig,
    )
    from lcsc.cli.common import explain_defaults

    parser = argparse.ArgumentParser(
        prog="checkfree",
        description="CheckFree: recover a lost pipeline stage from its neighbours.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "train",
        help="train a small LM pipeline-parallel while stages fail; recover them by a strategy",
        description="Train a byte-level LM cut into pipeline stages while stages fail, and"
        " recover each lost stage by --strategy (docs/checkfree.md).",
    )
    p.add_argument(
        "--stages",
        type=int,
        default=ModelConfig.stages,
        metavar="S",
        help="pipeline stages, at least 3",
    )
    p.add_argument(
        "--failure-rate",
        type=float,
        default=FailureConfig.rate_percent,
        metavar="PERCENT",
        help="hourly failure rate of each stage, in percent, 0 <= PERCENT < 100",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=TrainConfig.strategy,
        help="how a lost stage is recovered: from its neighbours (checkfree, checkfree+ with"
        " swapped routes, copy, uniform, random), from a checkpoint, or a redundant copy",
    )
    p.add_argument(
        "--iterations",
        type=int,
        default=TrainConfig.iterations,
        metavar="N",
        help="training iterations to complete; rolled-back ones are redone on top",
    )
    p.add_argument(
        "--processes",
        action="store_true",
        help="one process per stage on torch.distributed (gloo on CPU) instead of one process",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TrainConfig.seed,
        metavar="N",
        help="seed of the initialisation, the batches and the failures",
    )
    p.add_argument(
        "--iteration-time",
        type=float,
        default=FailureConfig.iteration_time_s,
        metavar="SECONDS",
        help="modelled duration of one iteration; it sets the failure odds and the wall clock",
    )
    p.add_argument("--out", metavar="DIR", help="log and summary folder (default: a temp dir)")
    p.add_argument(
        "--failing-stages",
        choices=FAILING_STAGES,
        default=FailureConfig.stages,
        help="which stages can fail; 'all' includes the first and last stage, which only"
        " checkfree+, checkpoint and redundant can recover",
    )
    p.add_argument(
        "--fail-at",
        action="append",
        default=[],
        metavar="STEP:STAGE",
        help="fail this stage at this step (executed iterations from 0) instead of random"
        " failures; repeatable (default: random failures at --failure-rate)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=int,
        default=TrainConfig.checkpoint_interval,
        metavar="ITERATIONS",
        help="checkpoint strategy: save every this many iterations",
    )
    p.add_argument(
        "--layers-per-stage",
        type=int,
        default=ModelConfig.layers_per_stage,
        metavar="N",
        help="transformer blocks per stage",
    )
    p.add_argument(
        "--dim",
        type=int,
        default=ModelConfig.dim,
        metavar="D",
        help="model width; --heads must divide it into an even head width",
    )
    p.add_argument(
        "--heads", type=int, default=ModelConfig.heads, metavar="N", help="attention heads"
    )
    p.add_argument(
        "--seq-len",
        type=int,
        default=ModelConfig.seq_len,
        metavar="T",
        help="context length, in tokens (bytes) per training sequence",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=TrainConfig.batch_size,
        metavar="N",
        help="sequences per iteration",
    )
    p.add_argument(
        "--micro-batches",
        type=int,
        default=TrainConfig.micro_batches,
        metavar="N",
        help="equal micro-batches each batch is split into (GPipe)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=TrainConfig.lr,
        help="AdamW peak learning rate, reached after warm-up, then cosine decay",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=TrainConfig.eval_every,
        metavar="STEPS",
        help="validation loss every this many executed iterations, and at the start and end",
    )
    p.add_argument(
        "--device", choices=DEVICES, default=TrainConfig.device, help="where the stages run"
    )
    m = p.add_argument_group(
        "across machines (with --processes; one launcher per machine, torchrun's names)"
    )
    m.add_argument(
        "--nnodes",
        type=int,
        metavar="N",
        help="launchers (machines) in the run (default: 1)",
    )
    m.add_argument(
        "--node-rank",
        type=int,
        default=LaunchConfig.node_rank,
        metavar="RANK",
        help="this launcher's rank, 0 <= RANK < N (0 hosts the store)",
    )
    m.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="the TCPStore every launcher and stage process meets at (launcher 0 listens;"
        f" default: {LaunchConfig.rdzv_endpoint})",
    )
    m.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=LaunchConfig.heartbeat_timeout_s,
        metavar="SECONDS",
        help="a launcher silent this long is lost with its stages",
    )
    m.add_argument(
        "--rejoin-wait",
        type=float,
        default=LaunchConfig.rejoin_wait_s,
        metavar="SECONDS",
        help="how long a lost stage waits for its restarted launcher before another hosts it",
    )
    m.add_argument(
        "--timeout",
        type=float,
        default=TrainConfig.timeout_s,
        metavar="SECONDS",
        help="give up when nothing happens for this long",
    )
    p.set_defaults(func=_cmd_train)
    return explain_defaults(parser)  # every option's help shows its default


def main(argv: Sequence[str] | None = None) -> int:
    from lcsc.cli.common import run_command

    args = build_parser().parse_args(argv)
    return run_command("checkfree", lambda: args.func(args))

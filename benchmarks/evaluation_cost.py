"""Where the time of one search evaluation goes, on the demo's objective.

One evaluation of ``lcsc demo``'s search is: combine the candidate's weights, sample 2000 digits
from fixed noise (one consistency step), map them to features, and compute the FD against the
reference statistics. This script times each part separately on the demo's CT run (trained
once and cached in ``OUT/run``, shared with ``search_budget.py demo``), for both ways the search
combines: from the K = 200 checkpoints (Algorithm 1, CMA-ES) and from the subspace search's
precomputed span models (:class:`lcsc.trajectory.span.SpanCombiner`). Each part is the median
of ``--repeats`` calls after one warm-up; shares are of the sum of the medians, so they hold on
a shared machine where absolute times move.

    python benchmarks/evaluation_cost.py --out runs/budget [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from search_budget import ensure_demo_run

from lcsc.ema import default_ema_rates
from lcsc.metrics import FeatureStats, compute_features, digits_features, frechet_distance
from lcsc.reference.digits.objective import digits_reference
from lcsc.reference.generative.generator import FixedNoiseGenerator
from lcsc.search import ema_init
from lcsc.search.subspace import SubspaceConfig
from lcsc.trajectory import Trajectory
from lcsc.trajectory.span import SpanCombiner


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(out: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms of each part of one evaluation, for the K-checkpoint and the span combine."""
    traj = Trajectory.open(ensure_demo_run(out) / "trajectory").select(start=1)
    md = traj.metadata
    extractor, reference = digits_features("main"), digits_reference(md, "main")
    generator = FixedNoiseGenerator(md, 2000, 0, "search")
    init = ema_init(traj.steps, default_ema_rates(traj.steps))
    span = SpanCombiner.build(traj, SubspaceConfig().span(init))
    assert span is not None
    # A candidate inside the span, so both combiners serve the same weights.
    rng = np.random.default_rng(0)
    c = rng.normal(size=len(span.vectors)) / len(span.vectors)
    c[0] += 1.0 - c.sum()
    a = span.vectors.T @ c
    state = traj.combine(a)
    samples = generator(state)
    feats = compute_features(extractor, samples, batch_size=len(samples))
    common = {
        "sample (2000, 1 step)": median_ms(lambda: generator(state), repeats),
        "features": median_ms(
            lambda: compute_features(extractor, samples, batch_size=len(samples)), repeats
        ),
        "FD": median_ms(
            lambda: frechet_distance(reference, FeatureStats.from_features(feats)), repeats
        ),
    }
    return {
        f"combine, K = {len(traj.steps)} checkpoints": {
            "combine": median_ms(lambda: traj.combine(a), repeats),
            **common,
        },
        f"combine, span of {len(span.vectors)} models": {
            "combine": median_ms(lambda: span.combine(a), repeats),
            **common,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/budget"), help="run cache")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per part")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads: {args.threads}; median of {args.repeats} calls per part")
    print("| combine from | part | ms | share of the evaluation |")
    print("|---|---|---|---|")
    for how, parts in measure(args.out, args.repeats).items():
        total = sum(parts.values())
        for part, ms in parts.items():
            print(f"| {how} | {part} | {ms:.1f} | {ms / total:.0%} |")
        print(f"| {how} | **one evaluation** | {total:.1f} | 100% |")


if __name__ == "__main__":
    main()

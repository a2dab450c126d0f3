"""Measured costs of the baselines and of recovery in multi-process mode (gloo, one process
per stage).

Real multi-process runs (``checkfree.train(processes=True)``) of the benchmark's model
(6 stages x 4 layers, d = 32); the wall-clock time at which each step's log record completes is
taken from the progress callback, so a step's time is the gap between two records (median
over the run; start-up and the final evaluation are left out), median over ``--repeats``
rotated repeats:

* **iteration**: a failure-free step (``checkfree``);
* **redundant computation**: each stage also runs its neighbour's forward and backward,
  measured as the step of the same pipeline with twice the layers per stage (own +
  neighbour's layers, the same messages; the extra activation message is not included).
  Its ratio to the normal step is the measured ``redundant_time_factor``;
* **snapshot write**: ``checkpoint`` saving after every step (each stage writes weights and
  AdamW state with ``write_checkpoint``, in parallel) minus the normal step;
* **rollback**: the failure step under ``checkpoint`` (the lost process replaced, every stage
  reloading its file; a checkpoint was saved just before, so nothing is redone) minus a step;
* **CheckFree recovery**: the failure step under ``checkfree`` (replacement process,
  neighbours' weights sent and averaged) minus a step.

Writes ``--out``/costs.json; its ``ratios`` (in modelled seconds for a 60-s iteration, and the
redundant factor) feed ``benchmarks/checkfree.py --costs``.

    nice -n 15 python benchmarks/checkfree_costs.py [--iterations 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# This script sits next to benchmarks/checkfree.py: keep ``import checkfree`` the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)


def config(args: argparse.Namespace, strategy: str, layers: int, iterations: int, **kw):
    from checkfree import FailureConfig, ModelConfig, TrainConfig

    model = ModelConfig(stages=6, layers_per_stage=layers, dim=args.dim, heads=4)
    return TrainConfig(
        model=model,
        failures=FailureConfig(0.0, events=kw.pop("events", ())),
        strategy=strategy,
        iterations=iterations,
        eval_every=10_000,  # evaluate at the start and the end only, in every variant
        processes=True,
        **kw,
    )


def arrivals(cfg, tmp: Path) -> list[float]:
    """Wall-clock time at which each log record (executed step) of a run completed."""
    from checkfree import train

    times: list[float] = []
    train(cfg, tmp / f"run{time.monotonic_ns()}", lambda *a, **k: times.append(time.perf_counter()))
    return times


def gaps(times: list[float]) -> list[float]:
    """Seconds per executed step (the last, which also evaluates, left out)."""
    return [b - a for a, b in zip(times[:-2], times[1:-1], strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--iteration-time", type=float, default=60.0, help="modelled seconds")
    ap.add_argument("--out", type=Path, default=Path("runs/checkfree"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "costs-tmp"
    n = args.iterations
    k = n // 2  # the failure step (a checkpoint was saved just before it: nothing redone)
    fail = {"events": ((k, 2),)}
    variants = {
        "normal": config(args, "checkfree", args.layers, n),
        "double": config(args, "checkfree", 2 * args.layers, n),
        "save-every": config(args, "checkpoint", args.layers, n, checkpoint_interval=1),
        "rollback": config(args, "checkpoint", args.layers, n, checkpoint_interval=k, **fail),
        "checkfree-fail": config(args, "checkfree", args.layers, n, **fail),
    }
    arrivals(config(args, "checkfree", 1, 3), tmp)  # warm-up: starts the fork server
    stats: dict[str, list[float]] = {}
    names = list(variants)
    t0 = time.perf_counter()
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate against drift
            g = gaps(arrivals(variants[name], tmp))
            base = statistics.median(g)
            stats.setdefault(name, []).append(base)
            if name in ("rollback", "checkfree-fail"):  # the failure step's extra time
                stats.setdefault(name + "-extra", []).append(g[k - 1] - base)
    m = {key: statistics.median(v) for key, v in stats.items()}
    it, it2 = m["normal"], m["double"]
    save = m["save-every"] - it
    result = {
        "measured_s": {
            "iteration": it,
            "iteration_with_neighbour_compute": it2,
            "snapshot_write": save,
            "rollback": m["rollback-extra"],
            "checkfree_recovery": m["checkfree-fail-extra"],
        },
        "ratios": {
            "redundant_factor": it2 / it,
            "save_s": args.iteration_time * save / it,
            "rollback_s": args.iteration_time * m["rollback-extra"] / it,
            "checkfree_recovery_s": args.iteration_time * m["checkfree-fail-extra"] / it,
        },
        "per_repeat_s": stats,
        "runtime_s": time.perf_counter() - t0,
        "load_average": os.getloadavg(),
    }
    (args.out / "costs.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = [
        ("iteration (normal)", it, "-"),
        ("iteration + neighbour's fwd/bwd (redundant)", it2, "x 151/91 = 1.66"),
        ("snapshot write (checkpoint save), per save", save, "0 s (free)"),
        ("rollback: replacement + every stage reloads", m["rollback-extra"], "0 s"),
        ("CheckFree recovery: replacement + neighbours", m["checkfree-fail-extra"], "0 s"),
    ]
    print("| cost | measured s | in iterations | modelled before |\n|---|---|---|---|")
    for name, sec, modelled in rows:
        print(f"| {name} | {sec:.3f} | {sec / it:.2f} | {modelled} |")
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    print(f"{len(names) * args.repeats} runs in {result['runtime_s']:.0f} s, load {load}")


if __name__ == "__main__":
    main()

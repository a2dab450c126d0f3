"""Per-evaluation overhead of the search machinery (ask/tell + history write).

For each method: K=200 checkpoints, a trivial objective, a workdir on disk, 2000
evaluations. The overhead of evaluation ``i`` is the wall time between consecutive
yields of :func:`lcsc.search.iterate` minus the time spent in the objective. pycma is
imported up front: its one-off import (about a second, it loads scipy) is not a
per-evaluation cost. CMA-ES cost is dominated by pycma's eigendecomposition of a
(K-1)x(K-1) matrix, i.e. by the BLAS (thread count matters for such small matrices).
Target: well under 5 ms per evaluation. Usage::

    python benchmarks/search_overhead.py [--k 200] [--evaluations 2000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cma  # noqa: F401  (see the docstring)
import numpy as np

from lcsc.search import iterate


def measure(method: str, k: int, evaluations: int, workdir: Path) -> np.ndarray:
    """Overhead per evaluation in milliseconds, shape ``(evaluations,)``."""
    target = np.linspace(-1.0, 2.0, k) / k

    def objective(a: np.ndarray) -> float:
        return float(np.dot(a - target, a - target))

    init = np.stack([np.full(k, 1.0 / k), np.eye(k)[-1]])
    overhead = np.empty(evaluations)
    last = time.perf_counter()
    for e in iterate(objective, init, method, budget=evaluations, seed=0, workdir=workdir):
        now = time.perf_counter()
        overhead[e.index] = (now - last - e.wall_time_s) * 1e3
        last = now
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--evaluations", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print(f"K={args.k}, workdir on disk under {tmp}")
        print(f"{'method':<14}{'evaluations':>12}{'mean ms/eval':>14}{'p95 ms/eval':>13}")
        for method in ("evolutionary", "cmaes", "random"):
            ms = measure(method, args.k, args.evaluations, Path(tmp) / method)
            mean, p95 = ms.mean(), np.percentile(ms, 95)
            print(f"{method:<14}{args.evaluations:>12}{mean:>14.3f}{p95:>13.3f}")


if __name__ == "__main__":
    main()

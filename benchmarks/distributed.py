"""Search wall time with 1 and 2 processes (torchrun, gloo on 127.0.0.1), splitting the
candidates of a generation (``--split candidates``) or the samples of each candidate
(``--split samples``) over the processes.

Objectives:

* ``sleep``: a sleep per evaluation (standing in for I/O or a remote evaluation) plus a K = 200
  sum, the ideal case for splitting candidates; K = 200, the default EMA init.
* ``sleep-fd``: a sample FD whose generator sleeps ``--sleep-ms`` per candidate, in proportion
  to the rows it samples (a model whose sampling dominates), the ideal case for splitting
  samples.
* ``digits``: ``lcsc.reference.digits:digits_fd`` (2000 samples, as the demo) on a small
  ``lcsc train`` run on digits (trained here, or ``--digits-run``): combine, sampling, features.
* ``demo`` (not by default): ``lcsc demo --nproc 2`` against ``lcsc demo`` (1000 training
  iterations, trained once, ``--budget`` evaluations, 2000 search and held-out samples), whole
  wall time; "same": ``results.json`` equal but for the wall time.

The 2-process history must equal the 1-process one (samples: the same candidates, scores
within 1e-9 relative; the float64 moment sums are ordered differently). Usage::

    python benchmarks/distributed.py [--budget 200] [--sleep-ms 20] [--objectives sleep ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 200
FD_DIM = 8


class SleepRows:
    """``{"w": (D,)} -> noise + w`` for fixed noise rows, sleeping ``ms`` per ``n`` rows."""

    def __init__(self, noise, ms: float, n: int) -> None:  # noqa: ANN001 (torch imported late)
        self.noise, self.ms, self.n = noise, ms, n

    def __len__(self) -> int:
        return len(self.noise)

    def shard(self, start: int, stop: int) -> SleepRows:
        return SleepRows(self.noise[start:stop], self.ms, self.n)

    def __call__(self, state_dict):  # noqa: ANN001, ANN204
        time.sleep(self.ms / 1e3 * len(self.noise) / self.n)
        return self.noise + state_dict["w"]


def _sleep_fd(sleep_ms: float):  # noqa: ANN202
    import torch

    from lcsc.metrics import FeatureStats
    from lcsc.objectives import SampleFD

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2000, FD_DIM, generator=g, dtype=torch.float64)
    reference = FeatureStats.from_features(torch.randn(2000, FD_DIM, generator=g) + 0.3)
    return SampleFD(SleepRows(noise, sleep_ms, len(noise)), torch.nn.Identity(), reference)


def search_once(args: argparse.Namespace, objective: str, split: str, out: Path) -> None:
    """One search (under torchrun: this rank's part); rank 0 writes the history and time."""
    import torch
    import torch.distributed as dist

    from lcsc import search
    from lcsc.search.distributed import for_split, is_leader, process_group_from_env

    steps = np.arange(1, K + 1) * 20
    target = search.ema_init(steps)[-1] + np.sin(np.arange(K)) / K

    def sleep(a: np.ndarray) -> float:
        time.sleep(args.sleep_ms / 1e3)
        return float(np.sum((a - target) ** 2))

    with process_group_from_env():
        spread = dist.is_initialized()
        if objective == "digits":
            from lcsc.reference.digits import digits_fd
            from lcsc.trajectory import Trajectory

            traj = Trajectory.open(Path(args.digits_run) / "trajectory").select(start=1)
            fd = digits_fd(args.digits_run, samples="2000")

            def run() -> search.SearchResult:
                return search.run(traj, fd, args.method, budget=args.budget, split=split)
        else:
            score = sleep
            if objective == "sleep-fd":
                fd = _sleep_fd(args.sleep_ms)
                fd = for_split(fd, split) if spread else fd

                def score(a: np.ndarray) -> float:
                    return fd({"w": torch.from_numpy(a[:FD_DIM] * K)})

            def run() -> search.SearchResult:
                init = search.ema_init(steps)
                return search.minimize(score, init, args.method, budget=args.budget, split=split)

        if spread:
            dist.barrier()  # start timing with every rank up
        start = time.perf_counter()
        result = run()
        wall = time.perf_counter() - start
        if is_leader():
            history = [[e.coefficients.tolist(), e.score] for e in result.history]
            out.write_text(json.dumps({"wall": wall, "history": history}))


def _train_run(directory: Path) -> None:
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.training import TrainConfig, train

    model = ModelConfig(kind="mlp", data_shape=(1, 8, 8), parametrisation="cm")
    train(TrainConfig(kind="ct", model=model, iterations=400, record_every=20), directory)


def _demo(args: argparse.Namespace, tmp: Path) -> tuple:
    """``lcsc demo`` against ``lcsc demo --nproc 2`` on one trained run (neither trains)."""
    import shutil

    from lcsc.reference.digits.demo import DemoConfig, train_run

    flags = ["--iterations", "1000", "--budget", str(args.budget), "--search-samples", "2000"]
    flags += ["--held-out-samples", "2000", "--held-out-seeds", "1"]
    train_run(DemoConfig(iterations=1000), tmp / "demo-run")
    walls, results, load = {}, {}, os.getloadavg()[0]
    for procs in (1, 2):
        out = tmp / f"demo-{procs}"
        shutil.copytree(tmp / "demo-run", out / "run")
        cmd = [sys.executable, "-m", "lcsc", "demo", "--out", str(out), "--nproc", str(procs)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([*cmd, *flags], check=True, env=env, stdout=subprocess.DEVNULL)
        results[procs] = json.loads((out / "results.json").read_text())
        walls[procs] = results[procs].pop("wall_time_s")
    return "evolutionary", "demo", "candidates", walls[1], walls[2], results[1] == results[2], load


def _same(one: list, two: list, split: str) -> bool:
    if [c for c, _ in one] != [c for c, _ in two]:
        return False
    if split == "candidates":
        return [s for _, s in one] == [s for _, s in two]
    return bool(np.allclose([s for _, s in one], [s for _, s in two], rtol=1e-9, atol=0.0))


def _measure(args: argparse.Namespace, method: str, objective: str, split: str, tmp: Path) -> tuple:
    from lcsc.search.distributed import local_launcher

    runs, load = {}, os.getloadavg()[0]
    for procs in (1, 2):
        out = tmp / f"{method}-{objective}-{split}-{procs}.json"
        cmd = [__file__, "--budget", str(args.budget), "--sleep-ms", str(args.sleep_ms)]
        cmd += ["--method", method, "--digits-run", str(args.digits_run)]
        cmd += ["--worker", objective, split, str(out)]
        cmd = [*local_launcher(procs), *cmd] if procs > 1 else [sys.executable, *cmd]
        # torchrun gives each rank OMP_NUM_THREADS=1; the single process gets the same,
        # since CMA-ES's eigendecomposition (BLAS) rounds differently with other counts.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, env=env)
        runs[procs] = json.loads(out.read_text())
    same = _same(runs[1]["history"], runs[2]["history"], split)
    return method, objective, split, runs[1]["wall"], runs[2]["wall"], same, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--sleep-ms", type=float, default=20.0)
    ap.add_argument("--methods", nargs="+", default=["evolutionary"])
    ap.add_argument("--method", default="evolutionary", help=argparse.SUPPRESS)  # a worker's
    ap.add_argument("--objectives", nargs="+", default=["sleep", "sleep-fd", "digits"])
    ap.add_argument("--splits", nargs="+", default=["candidates", "samples"])
    ap.add_argument("--digits-run", default="", help="lcsc train run (default: train one)")
    ap.add_argument("--worker", nargs=3, metavar=("OBJECTIVE", "SPLIT", "OUT"), help="internal")
    args = ap.parse_args()
    if args.worker:
        search_once(args, args.worker[0], args.worker[1], Path(args.worker[2]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if "digits" in args.objectives and not args.digits_run:
            args.digits_run = str(Path(tmp) / "run")
            _train_run(Path(args.digits_run))
        if "demo" in args.objectives:
            rows.append(_demo(args, Path(tmp)))
        for method in args.methods:
            for objective in (o for o in args.objectives if o != "demo"):
                for split in args.splits:
                    if objective == "sleep" and split == "samples":
                        continue  # a plain function has no samples to split
                    rows.append(_measure(args, method, objective, split, Path(tmp)))
    print(f"{args.budget} evaluations each; sleep {args.sleep_ms:g} ms per evaluation")
    print("| method | objective | split | 1 process s | 2 processes s | speed-up | same | load |")
    print("|---|---|---|---|---|---|---|---|")
    for method, objective, split, one, two, same, load in rows:
        print(
            f"| {method} | {objective} | {split} | {one:.2f} | {two:.2f} | {one / two:.2f}x"
            f" | {'yes' if same else 'NO'} | {load:.1f} |"
        )
    print("load: the 1-minute load average (2 cores) when the row's first run started")


if __name__ == "__main__":
    main()

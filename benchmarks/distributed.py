"""Search wall time with 1 and 2 processes (torchrun, gloo on 127.0.0.1) for an objective
dominated by waiting (a sleep standing in for I/O or a remote evaluation), the ideal case.

K = 200, the default EMA init, ``--budget`` evaluations of each method; the 2-process history
must equal the 1-process one. Usage::

    python benchmarks/distributed.py [--budget 200] [--sleep-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def search_once(method: str, budget: int, sleep_ms: float, out: Path) -> None:
    """One search (under torchrun: this rank's part); rank 0 writes the history and time."""
    import torch.distributed as dist

    from lcsc.search import ema_init, minimize
    from lcsc.search.distributed import is_leader, process_group_from_env

    k = 200
    steps = np.arange(1, k + 1) * 20
    target = ema_init(steps)[-1] + np.sin(np.arange(k)) / k

    def score(a: np.ndarray) -> float:
        time.sleep(sleep_ms / 1e3)
        return float(np.sum((a - target) ** 2))

    with process_group_from_env():
        if dist.is_initialized():
            dist.barrier()  # start timing with every rank up
        start = time.perf_counter()
        result = minimize(score, ema_init(steps), method, budget=budget, seed=0)
        wall = time.perf_counter() - start
        if is_leader():
            history = [[e.coefficients.tolist(), e.score] for e in result.history]
            out.write_text(json.dumps({"wall": wall, "history": history}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--sleep-ms", type=float, default=20.0)
    ap.add_argument("--methods", nargs="+", default=["evolutionary", "cmaes", "subspace"])
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        search_once(args.worker[0], args.budget, args.sleep_ms, Path(args.worker[1]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            runs = {}
            for procs in (1, 2):
                out = Path(tmp) / f"{method}-{procs}.json"
                cmd = [__file__, "--budget", str(args.budget), "--sleep-ms", str(args.sleep_ms)]
                cmd += ["--worker", method, str(out)]
                if procs > 1:
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        port = s.getsockname()[1]
                    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(procs)]
                    cmd = [
                        *launcher,
                        "--master-addr",
                        "127.0.0.1",
                        "--master-port",
                        str(port),
                        *cmd,
                    ]
                # torchrun gives each rank OMP_NUM_THREADS=1; the single process gets the same,
                # since CMA-ES's eigendecomposition (BLAS) rounds differently with other counts.
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                subprocess.run([sys.executable, *cmd], check=True, env=env)
                runs[procs] = json.loads(out.read_text())
            same = runs[1]["history"] == runs[2]["history"]
            rows.append((method, runs[1]["wall"], runs[2]["wall"], same))
    print(f"{args.budget} evaluations, objective = {args.sleep_ms:g} ms sleep + a K=200 sum")
    print("| method | 1 process s | 2 processes s | speed-up | same history |")
    print("|---|---|---|---|---|")
    for method, one, two, same in rows:
        print(
            f"| {method} | {one:.2f} | {two:.2f} | {one / two:.2f}x | {'yes' if same else 'NO'} |"
        )


if __name__ == "__main__":
    main()

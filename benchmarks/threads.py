"""combine() and a small MLP forward pass with 1 vs 2 torch threads, as is and shared.

Each setting runs in a fresh process (OMP_WAIT_POLICY is read when torch loads OpenMP), once
as the machine is and once while ``--busy`` CPU-bound competitors (busy Python loops) run.
Times are means over ``--repeats`` calls (stalls count); ratios are against 1 thread in the
same condition. Usage::

    python benchmarks/threads.py [--k 200] [--params 400000] [--repeats 30] [--busy 1]
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

CHILD = r"""
import json, sys, time
import numpy as np, torch
threads, directory, repeats = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
from lcsc.trajectory import Trajectory
traj = Trajectory.open(directory, check_finite=False)
a = np.full(len(traj), 1.0 / len(traj))
net = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.SiLU(), torch.nn.Linear(512, 64))
x = torch.randn(2000, 64)
traj.combine(a)
def timed(fn):  # the mean, not the best: stalls at OpenMP barriers are what we measure
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats
with torch.no_grad():
    fwd = timed(lambda: [net(x) for _ in range(10)])
print(json.dumps({"combine": timed(lambda: traj.combine(a)), "mlp": fwd}))
"""

SETTINGS = [  # label, threads, environment
    ("1 thread", 1, {}),
    ("2 threads", 2, {}),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("lcsc default", 0, {}),
]


def run_child(directory: Path, threads: int, env: dict[str, str], repeats: int) -> dict:
    if threads == 0:  # the policy of lcsc.threads, as the CLI applies it
        from lcsc.threads import default_threads

        threads, env = default_threads(), {"OMP_WAIT_POLICY": "PASSIVE"}
    full = {**os.environ, **env}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(directory), str(repeats)],
        env=full,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--params", type=int, default=400_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--busy", type=int, default=1, help="competing busy processes")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from combine import make_trajectory

    with tempfile.TemporaryDirectory(prefix="lcsc-threads-") as tmp:
        directory = Path(tmp) / "traj"
        make_trajectory(directory, args.k, args.params, compact=False)
        rows = []
        for shared in (False, True):
            spin = [sys.executable, "-c", "while True: pass"]
            busy = [subprocess.Popen(spin) for _ in range(args.busy if shared else 0)]
            time.sleep(0.5 if shared else 0.0)
            try:
                for label, threads, env in SETTINGS:
                    rows.append((shared, label, run_child(directory, threads, env, args.repeats)))
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
    print(f"K={args.k}, {args.params / 1e6:.1f}M parameters, {os.cpu_count()} CPUs")
    print("| machine | setting | combine ms | vs 1 thread | 10 MLP forwards ms | vs 1 thread |")
    print("|---|---|---|---|---|---|")
    base: dict[bool, dict] = {}
    for shared, label, r in rows:
        base.setdefault(shared, r)
        b = base[shared]
        print(
            f"| {f'+{args.busy} busy' if shared else 'as is'} | {label} |"
            f" {r['combine'] * 1e3:.1f} |"
            f" {r['combine'] / b['combine']:.2f}x | {r['mlp'] * 1e3:.1f} |"
            f" {r['mlp'] / b['mlp']:.2f}x |"
        )


if __name__ == "__main__":
    main()

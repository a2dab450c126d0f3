"""Recorder slowdown of a training loop: a 400K-parameter MLP, a checkpoint every 20 steps.

Times the same seeded training loop with and without a Recorder (float32 and compact storage),
rotating the order of runs to cancel drift. Target: under 3 % slowdown.

    python benchmarks/recorder.py [--steps 2000] [--every 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lcsc.trajectory import Recorder


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    # 64 -> 576 -> 576 -> 64 with biases: about 0.41M parameters.
    return torch.nn.Sequential(
        torch.nn.Linear(64, 576),
        torch.nn.SiLU(),
        torch.nn.Linear(576, 576),
        torch.nn.SiLU(),
        torch.nn.Linear(576, 64),
    )


def train(steps: int, every: int, directory: Path | None, compact: bool) -> float:
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(4096, 64, generator=g)
    rec = Recorder(directory, every=every, compact=compact) if directory else None
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x = data[torch.randint(0, 4096, (128,), generator=g)]
        loss = (net(x) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rec is not None:
            rec.update(net, step)
    if rec is not None:
        rec.close()  # the last writes count too
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=6)
    args = ap.parse_args()
    params = sum(p.numel() for p in model().parameters())
    times: dict[str, list[float]] = {"none": [], "float32": [], "compact": []}
    train(200, args.every, None, False)  # warm-up
    modes = list(times)
    for r in range(args.repeats):
        for mode in modes[r % 3 :] + modes[: r % 3]:  # rotate the order to cancel drift
            with tempfile.TemporaryDirectory() as d:
                directory = None if mode == "none" else Path(d)
                times[mode].append(train(args.steps, args.every, directory, mode == "compact"))
    base = min(times["none"])
    print(
        f"Recorder overhead: {params / 1e3:.0f}K-parameter MLP, batch 128, {args.steps} steps,"
        f" every {args.every}, {torch.get_num_threads()} threads (best of {args.repeats})"
    )
    print("| recording | s | it/s | slowdown |")
    print("|---|---|---|---|")
    for mode, ts in times.items():
        best = min(ts)
        slowdown = 100 * (best / base - 1)
        print(f"| {mode} | {best:.2f} | {args.steps / best:.0f} | {slowdown:+.1f}% |")


if __name__ == "__main__":
    main()

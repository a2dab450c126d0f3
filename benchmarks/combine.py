"""combine() time against the physical floor: one streaming read of the same bytes.

K checkpoints of a P-parameter model, float32 and compact storage; the files are warm in the
page cache (read once before timing), so both the floor and combine() measure memory bandwidth.
Target: combine() at most 1.2x the floor on CPU. The honest floor is the mmap scan (read()
also copies every byte); "open" is ``Trajectory.open`` with its finiteness check, which should
cost about one scan. "G values/s" is checkpoint values combined per second.

    python benchmarks/combine.py [--k 200] [--params 5000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import mmap
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lcsc.threads import default_threads
from lcsc.trajectory import Recorder, Trajectory
from lcsc.trajectory.span import SpanCombiner


def make_trajectory(directory: Path, k: int, params: int, compact: bool) -> None:
    """A random-walk 'training run': small steps around a fixed start, like SGD."""
    g = torch.Generator().manual_seed(0)
    width = int((params / 2.2) ** 0.5)
    shapes = {
        "in.weight": (width, width),
        "in.bias": (width,),
        "mid.weight": (width, width // 5),
        "out.weight": (params - width * width - width - width * (width // 5),),
    }
    state = {name: torch.randn(*s, generator=g) * 0.05 for name, s in shapes.items()}
    with Recorder(directory, every=1, compact=compact) as rec:
        for step in range(1, k + 1):
            for t in state.values():
                t.add_(torch.randn(t.shape, generator=g), alpha=1e-4)
            rec.update(state, step)


def streaming_read(paths: list[Path]) -> float:
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    start = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    return time.perf_counter() - start


def mmap_scan(paths: list[Path]) -> float:
    """Touch every byte once through memory maps (no copy): a tighter floor than read()."""
    views = []
    for p in paths:
        with open(p, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        views.append(torch.frombuffer(mm, dtype=torch.int32, count=len(mm) // 4))
    start = time.perf_counter()
    for v in views:
        v.max()
    return time.perf_counter() - start


def time_span(traj: Trajectory, m: int, repeats: int, direct: float) -> tuple:
    """SpanCombiner: build time for ``m`` models and one in-span combine, against ``direct``."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(m, len(traj))) / len(traj)
    start = time.perf_counter()
    combiner = SpanCombiner.build(traj, vectors)
    build = time.perf_counter() - start
    assert combiner is not None
    a = vectors.T @ rng.normal(size=m)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        combiner.combine(a)
        times.append(time.perf_counter() - start)
    return m, build, min(times), direct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--params", type=int, default=5_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--span", type=int, default=24, help="models of a subspace search's span")
    args = ap.parse_args()
    torch.set_num_threads(default_threads())
    root = Path(tempfile.mkdtemp(prefix="lcsc-bench-"))
    rows, span_rows = [], []
    try:
        for storage in ("float32", "compact"):
            d = root / storage
            make_trajectory(d, args.k, args.params, storage == "compact")
            traj = Trajectory.open(d)
            opened = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                Trajectory.open(d)
                opened.append(time.perf_counter() - start)
            a = np.random.default_rng(0).normal(size=len(traj)) / len(traj) + 1 / len(traj)
            streaming_read(traj.paths)  # warm the page cache
            floor = min(streaming_read(traj.paths) for _ in range(args.repeats))
            mmap_scan(traj.paths)
            scan = min(mmap_scan(traj.paths) for _ in range(args.repeats))
            traj.combine(a)  # first touches map the pages
            traj.combine(a)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                traj.combine(a)
                times.append(time.perf_counter() - start)
            best = min(times)
            values = len(traj) * traj.num_parameters
            med = statistics.median(times)
            rows.append((storage, traj.nbytes, values, floor, scan, min(opened), best, med))
            if storage == "float32":
                span_rows.append(time_span(traj, args.span, args.repeats, best))
            shutil.rmtree(d)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"combine(): K={args.k}, {args.params / 1e6:.1f}M parameters, torch {torch.__version__},"
        f" {torch.get_num_threads()} threads (lcsc default),"
        f" {platform.processor() or platform.machine()}"
    )
    print(
        "| storage | GB | read() s | mmap scan s | open s | open / scan | combine s | median s"
        " | vs read | vs scan | G values/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for storage, nbytes, values, floor, scan, opened, best, med in rows:
        print(
            f"| {storage} | {nbytes / 1e9:.2f} | {floor:.3f} | {scan:.3f} | {opened:.3f} |"
            f" {opened / scan:.2f}x | {best:.3f} | {med:.3f} | {best / floor:.2f}x |"
            f" {best / scan:.2f}x | {values / best / 1e9:.2f} |"
        )
    print("\n| span models m | build s | in-span combine s | direct combine s | speed-up |")
    print("|---|---|---|---|---|")
    for m, build, span, direct in span_rows:
        print(f"| {m} | {build:.2f} | {span:.4f} | {direct:.3f} | {direct / span:.1f}x |")


if __name__ == "__main__":
    main()

"""``lcsc demo`` on the machine as it is and while busy competitors share its cores.

The same demo command (its own thread default; nothing set in the environment) runs once as the
machine is and once while ``--busy`` CPU-bound processes (busy Python loops) run. Per run: wall
time, the CPU time the demo used (user + system, from its own rusage), the demo's share of a
core (CPU / wall) and the ratios against the run as is. What a thread default must guarantee on
shared cores is the same *CPU* time (no spinning at barriers); wall time grows by the share the
competitors take, which no program can avoid. The outputs of the two runs (coefficients, the
LCSC model, every score in results.json) must be identical. Usage::

    python benchmarks/demo_shared.py [--busy 2] [-- DEMO FLAGS, e.g. --iterations 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPIN = [sys.executable, "-c", "while True: pass"]
COMPARED = ("lcsc.safetensors", "lcsc_coefficients.json")  # besides results.json's scores


def run_demo(out: Path, flags: list[str], busy: int) -> dict[str, float]:
    """One ``lcsc demo`` with ``busy`` competitors running: wall and CPU seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    spinners = [subprocess.Popen(SPIN) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0.0)  # let the competitors reach their loops
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        command = [sys.executable, "-m", "lcsc", "demo", "--out", str(out), *flags]
        done = subprocess.run(command, env=env, capture_output=True, text=True)  # no bars
        if done.returncode:
            raise SystemExit(f"lcsc demo failed:\n{done.stderr[-2000:]}")
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def fingerprint(out: Path) -> dict[str, str]:
    """Hashes of the compared outputs and of every score in results.json (not its times)."""
    digests = {}
    for name in COMPARED:
        path = out / name
        if path.is_file():
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    results = json.loads((out / "results.json").read_text())
    scores = {k: v for k, v in results.items() if k != "wall_time_s"}
    digests["results.json scores"] = hashlib.sha256(
        json.dumps(scores, sort_keys=True).encode()
    ).hexdigest()
    return digests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=2, help="competing busy processes")
    ap.add_argument("demo_flags", nargs="*", help="flags passed to lcsc demo (after --)")
    args = ap.parse_args()
    rows, prints = [], []
    with tempfile.TemporaryDirectory(prefix="lcsc-demo-shared-") as tmp:
        for busy in (0, args.busy):
            out = Path(tmp) / f"busy{busy}"
            rows.append((busy, run_demo(out, args.demo_flags, busy)))
            prints.append(fingerprint(out))
    load = os.getloadavg()[0]
    print(f"lcsc demo {' '.join(args.demo_flags)}; {os.cpu_count()} CPUs; load now {load:.1f}")
    print("| machine | wall s | CPU s | CPU / wall | wall vs as is | CPU vs as is |")
    print("|---|---|---|---|---|---|")
    base = rows[0][1]
    for busy, r in rows:
        print(
            f"| {f'+{busy} busy' if busy else 'as is'} | {r['wall']:.1f} | {r['cpu']:.1f} |"
            f" {r['cpu'] / r['wall']:.2f} | {r['wall'] / base['wall']:.2f}x |"
            f" {r['cpu'] / base['cpu']:.2f}x |"
        )
    same = prints[0] == prints[1]
    print(f"outputs identical ({', '.join(prints[0])}): {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()

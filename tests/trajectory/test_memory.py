"""The memory model (docs/trajectories.md): every file of an open trajectory stays mapped, so
the address space must hold the trajectory; under a smaller ``ulimit -v`` the error says so."""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

FILES = 8
FLOATS = 8 << 20  # 32 MiB per file, 256 MiB in all, sparse on disk

# Imports first (their own address space is not the trajectory's), then the limit: what is
# mapped already plus MARGIN bytes.
_SCRIPT = """
import resource, sys
import torch
torch.set_num_threads(1)
import lcsc.inspection
from lcsc.cli import main
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]), resource.RLIM_INFINITY))
sys.exit(main(["inspect", sys.argv[1]]))
"""


def _sparse_trajectory(folder: Path) -> None:
    folder.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [FLOATS], "data_offsets": [0, 4 * FLOATS]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    for i in range(FILES):
        with open(folder / f"ckpt_{i + 1:03d}.safetensors", "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            f.truncate(8 + len(raw) + 4 * FLOATS)  # zeros, without writing them


def _inspect_under_limit(folder: Path, margin: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder), str(margin)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_address_space_limit_below_the_trajectory_is_explained(tmp_path: Path) -> None:
    if not Path("/proc/self/status").exists() or resource.getrlimit(resource.RLIMIT_AS)[0] != (
        resource.RLIM_INFINITY
    ):
        pytest.skip("needs /proc and no address-space limit already in place")
    folder = tmp_path / "traj"
    _sparse_trajectory(folder)
    trajectory = FILES * 4 * FLOATS
    ok = _inspect_under_limit(folder, trajectory + (128 << 20))
    assert ok.returncode == 0, ok.stderr
    assert f"checkpoints: {FILES} of {FILES} files" in ok.stdout
    short = _inspect_under_limit(folder, trajectory // 3)  # room for two or three files
    assert short.returncode == 1 and "Traceback" not in short.stderr
    problems = [line for line in short.stdout.splitlines() if "cannot map" in line]
    assert problems, short.stdout + short.stderr
    assert "ulimit -v" in problems[0] and "Errno 12" in problems[0]

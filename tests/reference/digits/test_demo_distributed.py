"""``lcsc demo --nproc 2`` (torchrun, gloo on 127.0.0.1) gives what one process gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lcsc.cli import main

FLAGS = ["--iterations", "100", "--budget", "30", "--search-samples", "100"]
FLAGS += ["--held-out-samples", "100", "--held-out-seeds", "1", "--seed", "3"]


def _demo(out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    # One BLAS/OpenMP thread in every process, as torchrun gives each rank: the transfer
    # spaces' float64 matmuls round differently with other thread counts.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lcsc", "demo", "--out", str(out), *FLAGS, *flags]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_demo_on_two_processes_equals_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    first = _demo(one)
    assert first.returncode == 0, first.stderr
    second = _demo(two, "--nproc", "2")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("## Transfer report") == 1  # rank 0 alone reports

    def results(out: Path) -> dict:
        doc = json.loads((out / "results.json").read_text())
        assert doc.pop("wall_time_s") > 0
        return doc

    def history(out: Path) -> list[tuple[list[float], float]]:
        lines = (out / "search" / "history.jsonl").read_text().splitlines()
        return [(r["coefficients"], r["score"]) for r in map(json.loads, lines)]

    got, want = results(two), results(one)
    assert got == want and want["evaluations"] == 30
    assert history(two) == history(one)
    assert (two / "lcsc_coefficients.json").read_text() == (
        one / "lcsc_coefficients.json"
    ).read_text()
    for name in ("run/ema.safetensors", "lcsc.safetensors", "ema_star.safetensors"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name


def test_bad_nproc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--nproc", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "lcsc: error: --nproc must be >= 1, got 0"
    assert not (tmp_path / "d").exists()  # nothing started

"""The thread policy: OMP_NUM_THREADS or half the CPUs, applied and restored, and the CLI's
passive OpenMP wait policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lcsc import search, threads
from lcsc.cli import main
from lcsc.errors import LcscError
from lcsc.trajectory import Trajectory


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (3, 1), (16, 8)])
def test_default_is_half_the_cpus(
    monkeypatch: pytest.MonkeyPatch, cpus: int, expected: int
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: cpus)
    assert threads.default_threads() == expected


def test_default_follows_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(LcscError, match="OMP_NUM_THREADS must be a positive integer"):
        threads.default_threads()


def test_using_applies_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with threads.using(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == "2"
    assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ
    with (
        pytest.raises(LcscError, match="--threads must be an integer >= 1; got 0"),
        threads.using(0, "--threads"),
    ):
        pass


def test_search_run_uses_the_requested_threads(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    seen: list[int] = []

    def objective(state: dict[str, torch.Tensor]) -> float:
        seen.append(torch.get_num_threads())
        return float(sum(t.double().pow(2).sum() for t in state.values()))

    before = torch.get_num_threads()
    search.run(traj, objective, "random", budget=3, threads=2)
    assert seen == [2, 2, 2] and torch.get_num_threads() == before


def test_cli_rejects_bad_thread_count(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = recorded.parent / "m.safetensors"
    assert main(["merge", str(recorded), "--uniform", "-o", str(out), "--threads", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lcsc: error: --threads must be an integer >= 1; got 0"]
    assert not out.exists()
    assert main(["--threads", "2", "merge", str(recorded), "--uniform", "-o", str(out)]) == 0
    assert out.exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, ["PASSIVE", str(threads.default_threads())]),
        ({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2"}, ["ACTIVE", "2"]),
    ],
)
def test_cli_prepares_openmp_before_torch(given: dict[str, str], expected: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    code = (
        "import os, sys, lcsc.cli, torch\n"
        "print(os.environ['OMP_WAIT_POLICY'], os.environ['OMP_NUM_THREADS'], torch.get_num_threads())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, **given},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [*expected, expected[1]]  # torch started with that count

"""``lcsc search`` killed with SIGKILL, then resumed: it says so, and its progress counts new work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tqdm

from lcsc.cli import main

# Kills its own process (as kill -9 would) at the KILL_AT-th evaluation, before it is logged.
OBJECTIVE = """
import os
import signal

CALLS = [0]

def make():
    kill_at = int(os.environ.get("KILL_AT", "0"))

    def objective(sd):
        CALLS[0] += 1
        if CALLS[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return float(sum(v.double().pow(2).sum() for v in sd.values() if v.is_floating_point()))

    return objective
"""


class RecordedBar(tqdm.tqdm):
    """tqdm, keeping every increment and the bar's counters at close."""

    bars: list[RecordedBar] = []

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.increments: list[float] = []
        self.final: dict[str, object] = {}
        super().__init__(*args, **kwargs)
        RecordedBar.bars.append(self)

    def update(self, n: float | None = 1) -> bool | None:
        self.increments.append(1 if n is None else n)
        return super().update(n)

    def close(self) -> None:
        if not self.final:
            self.final = dict(self.format_dict)
        super().close()


def test_killed_search_resumes_and_counts_only_new_evaluations(
    recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    work, budget, kill_at = tmp_path / "work", 10, 5
    args = ["search", str(recorded), "--objective", f"{tmp_path / 'objective.py'}:make"]
    args += ["--method", "random", "--budget", str(budget), "--workdir", str(work)]
    env = {**os.environ, "KILL_AT": str(kill_at)}
    proc = subprocess.run([sys.executable, "-m", "lcsc", *args], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    done = (work / "history.jsonl").read_text().count("\n")
    assert done == kill_at - 1  # every evaluation before the kill was logged

    monkeypatch.delenv("KILL_AT", raising=False)
    monkeypatch.setattr(tqdm, "tqdm", RecordedBar)  # the bar `lcsc search` draws
    RecordedBar.bars.clear()
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"resuming: {done} evaluations replayed from {work / 'history.jsonl'}" in out
    (bar,) = RecordedBar.bars
    # The replayed evaluations start the bar; only the new ones are counted as progress.
    assert bar.final["initial"] == done and bar.final["n"] == budget
    assert bar.increments == [1] * (budget - done)
    # tqdm's rate (and so its ETA) is (n - initial) / elapsed: new evaluations only.
    meter = tqdm.tqdm.format_meter(**{**bar.final, "elapsed": 2.0, "rate": None})
    assert f"{(budget - done) / 2.0:.2f}eval/s" in meter, meter
    assert len((work / "history.jsonl").read_text().splitlines()) == budget

"""Across machines: launchers on 127.0.0.1 stand for machines meeting at a TCPStore.

Each launcher is a real ``checkfree train --processes --nnodes 2 ...`` command in its own
process group (a machine); killing that group kills the launcher and its stage processes at
once, as losing the machine would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import checkfree
from checkfree import FailureConfig, ModelConfig, TrainConfig, train
from checkfree.distributed import free_port

SRC = str(Path(checkfree.__file__).resolve().parents[1])
#: 5 stages on 2 launchers: launcher 1 holds stages 1 and 3, two non-adjacent intermediate
#: stages, so CheckFree can rebuild both when that launcher is lost.
STAGES = 5


def _args(port: int, rank: int, out: Path, iterations: int, rejoin_wait: float) -> list[str]:
    return [
        sys.executable, "-m", "checkfree", "train",
        "--stages", str(STAGES), "--iterations", str(iterations), "--dim", "32",
        "--heads", "2", "--seq-len", "32", "--batch-size", "4", "--eval-every", "3",
        "--failure-rate", "0", "--processes", "--nnodes", "2", "--node-rank", str(rank),
        "--rdzv-endpoint", f"127.0.0.1:{port}", "--timeout", "90",
        "--heartbeat-timeout", "5", "--rejoin-wait", str(rejoin_wait), "--out", str(out),
    ]  # fmt: skip


class Machines:
    """Launcher commands, each in its own process group; all killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.tmp / f"{name}.txt", "w") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """The whole machine: the launcher and every process it started."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def wait(self, proc: subprocess.Popen, name: str, timeout: float = 240) -> None:
        rc = proc.wait(timeout=timeout)
        assert rc == 0, (self.tmp / f"{name}.txt").read_text()[-3000:]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture
def machines(tmp_path: Path):
    m = Machines(tmp_path)
    yield m
    m.close()


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _steps_logged(out: Path) -> int:
    path = out / "log.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _config(iterations: int, events=()) -> TrainConfig:
    """The launchers' settings (the command's flags, defaults otherwise)."""
    return TrainConfig(
        model=ModelConfig(stages=STAGES, dim=32, heads=2, seq_len=32),
        failures=FailureConfig(0.0, events=events),
        iterations=iterations,
        batch_size=4,
        eval_every=3,
    )


def _same_losses(log: list[dict], reference) -> None:
    ref = reference.records
    assert len(log) == len(ref)
    for a, b in zip(log, ref, strict=True):
        assert a["failures"] == b["failures"]
        if a["train_loss"] is not None:
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        if "val_loss" in a:
            assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)


def test_two_launchers_equal_one_launcher_without_failures(machines, tmp_path: Path) -> None:
    port = free_port()
    procs = [machines.start(_args(port, r, tmp_path / f"n{r}", 6, 30), f"n{r}") for r in (0, 1)]
    for r, p in enumerate(procs):
        machines.wait(p, f"n{r}")
    one = train(replace(_config(6), processes=True))  # the built-in one-launcher mode
    for r in (0, 1):
        _same_losses(_log(tmp_path / f"n{r}"), one)
        assert all(r["train_loss"] is not None for r in _log(tmp_path / f"n{r}")[1:])
    summary = json.loads((tmp_path / "n1" / "summary.json").read_text())
    assert sorted(p["stage"] for p in summary["processes"]) == [1, 3]


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "not-restarted"])
def test_a_launcher_killed_whole_is_survived(machines, tmp_path: Path, restart: bool) -> None:
    iterations = 40
    port = free_port()
    n0 = machines.start(_args(port, 0, tmp_path / "n0", iterations, 60 if restart else 0), "n0")
    n1 = machines.start(_args(port, 1, tmp_path / "n1", iterations, 60), "n1")
    deadline = time.monotonic() + 120
    while _steps_logged(tmp_path / "n0") < 4:  # training is under way
        assert time.monotonic() < deadline and n0.poll() is None and n1.poll() is None
        time.sleep(0.05)
    machines.kill(n1)
    if restart:  # the same machine comes back and runs the same command
        n1 = machines.start(_args(port, 1, tmp_path / "n1b", iterations, 60), "n1b")
    machines.wait(n0, "n0")
    if restart:
        machines.wait(n1, "n1b")
    log = _log(tmp_path / "n0")
    lost = [(r["step"] - 1, r["failures"]) for r in log if r["failures"]]
    assert len(lost) == 1 and lost[0][1] == [1, 3]  # launcher 1's two stages, once
    step = lost[0][0]
    assert 3 <= step < iterations
    # The replacements ran where the issue says they may: on the restarted launcher, or on
    # the surviving one; either way fresh processes that joined at the failure step.
    host = tmp_path / ("n1b" if restart else "n0") / "summary.json"
    processes = json.loads(host.read_text())["processes"]
    assert sorted(p["stage"] for p in processes if p["joined_at"] == step) == [1, 3]
    survivors = json.loads((tmp_path / "n0" / "summary.json").read_text())["processes"]
    assert all(p["joined_at"] is None for p in survivors if p["stage"] in (0, 2, 4))
    # And the numbers are those of one process losing stages 1 and 3 at that step.
    alone = train(_config(iterations, events=((step, 1), (step, 3))))
    _same_losses(log, alone)
    assert sum(r["train_loss"] is None for r in log[1:]) <= 1  # at most the killed step's
    if restart:
        _same_losses(_log(tmp_path / "n1b"), alone)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--processes", "--nnodes", "2", "--node-rank", "2"], "LaunchConfig.node_rank"),
        (["--processes", "--rdzv-endpoint", "localhost"], "LaunchConfig.rdzv_endpoint"),
        (["--nnodes", "2"], "needs --processes"),
        (["--processes", "--nnodes", "2", "--strategy", "redundant"], "cannot run across"),
    ],
)
def test_bad_launch_settings_are_one_clear_line(tmp_path: Path, capsys, extra, message) -> None:
    from checkfree.cli import main

    out = tmp_path / "out"
    assert main(["train", "--stages", "4", "--iterations", "2", "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()  # refused before anything was written

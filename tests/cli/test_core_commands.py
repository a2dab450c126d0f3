from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import read_checkpoint, write_checkpoint
from lcsc.cli import main
from lcsc.ema import ema_coefficients
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import combine_groups, module_patterns, resolve_groups
from tests.cli.conftest import OBJECTIVE


def _lcsc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lcsc", *args], capture_output=True, text=True, cwd=cwd
    )


def test_inspect_reports_summary(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(recorded)]) == 0
    out = capsys.readouterr().out
    assert "checkpoints: 12 of 12 files" in out
    assert "steps:       5 .. 60" in out and "interval:    5 (x11)" in out
    assert "problems:    none" in out


def test_inspect_lists_problems(recorded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = recorded / "step-0000000030.safetensors"
    sd = dict(read_checkpoint(bad).tensors)
    sd["3.bias"] = torch.tensor([float("nan"), 0.0])
    write_checkpoint(bad, sd, {"lcsc_step": "30"})
    assert main(["inspect", str(recorded)]) == 1
    out = capsys.readouterr().out
    assert "step-0000000030.safetensors: key '3.bias' holds 1 NaN/Inf values" in out


def test_merge_ema_matches_api(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "ema.safetensors"
    assert main(["merge", str(recorded), "--ema", "0.95", "-o", str(out)]) == 0
    traj = Trajectory.open(recorded)
    want = traj.combine(ema_coefficients(traj.steps, 0.95))
    got = read_checkpoint(out)
    for k, v in want.items():
        assert torch.equal(got.tensors[k], v)
    assert json.loads(got.metadata["lcsc_metadata"]) == {"seed": 0}


@pytest.mark.parametrize("form", ["list", "object"])
def test_merge_coefficients_file(recorded: Path, tmp_path: Path, form: str) -> None:
    a = np.linspace(-0.5, 1.5, 12)
    a /= a.sum()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(a.tolist() if form == "list" else {"coefficients": a.tolist()}))
    out = tmp_path / "m.safetensors"
    assert main(["merge", str(recorded), "--coefficients", str(path), "-o", str(out)]) == 0
    want = Trajectory.open(recorded).combine(a)
    assert torch.equal(read_checkpoint(out).tensors["0.weight"], want["0.weight"])


def test_user_errors_are_one_line_and_keep_outputs(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "existing.safetensors"
    out.write_bytes(b"precious")
    (tmp_path / "short.json").write_text("[0.5, 0.5]")
    cases = [
        (
            [
                "merge",
                str(recorded),
                "--coefficients",
                str(tmp_path / "short.json"),
                "-o",
                str(out),
            ],
            "holds 2 coefficients but there are 12 checkpoints",
        ),
        (["merge", str(tmp_path / "missing"), "--ema", "0.9", "-o", str(out)], "no such file"),
        (["merge", str(recorded), "--ema", "1.5", "-o", str(out)], "rate"),
        (
            ["merge", str(recorded), "--ema", "0.9", "--start", "999", "-o", str(out)],
            "no checkpoint between",
        ),
        (
            [
                "search",
                str(recorded),
                "--objective",
                "nope",
                "--budget",
                "5",
                "--workdir",
                str(tmp_path / "w"),
            ],
            "expected MODULE:FUNCTION",
        ),
        (
            [
                "search",
                str(recorded),
                "--objective",
                "no_such_module_xyz:f",
                "--budget",
                "5",
                "--workdir",
                str(tmp_path / "w"),
            ],
            "cannot import no_such_module_xyz",
        ),
    ]
    for args, message in cases:
        proc = _lcsc(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("lcsc: error:")]
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert out.read_bytes() == b"precious"
    proc = _lcsc("merge", str(recorded), "-o", str(out))  # argparse: no method given
    assert proc.returncode == 2 and "one of the arguments" in proc.stderr


def test_search_writes_outputs_and_resumes(recorded: Path, tmp_path: Path) -> None:
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    work = tmp_path / "work"
    args = [
        "search",
        str(recorded),
        "--objective",
        "obj:make",
        "--objective-arg",
        "target=0.05",
        "--method",
        "cmaes",
        "--budget",
        "40",
        "--seed",
        "3",
        "--workdir",
        str(work),
    ]
    proc = _lcsc(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (work / "history.jsonl").read_text().splitlines()
    assert len(lines) == 40
    best = json.loads((work / "best_coefficients.json").read_text())
    scores = [json.loads(line)["score"] for line in lines]
    assert best["score"] == min(scores)
    traj = Trajectory.open(recorded)
    merged = read_checkpoint(work / "best.safetensors").tensors
    # the default: one coefficient vector per top-level module
    groups = resolve_groups(traj.keys, module_patterns(traj.keys))
    assert best["groups"] == list(groups.names) and len(groups) > 1
    assert f"searching {len(groups)} coefficient vectors" in proc.stdout
    want = combine_groups(traj, groups, best["coefficients"])
    assert all(torch.equal(merged[k], want[k]) for k in traj.keys)
    # Objective check by hand, and the same command with a larger budget continues.
    manual = sum(
        float((v.double() - 0.05).pow(2).sum()) for k, v in merged.items() if v.is_floating_point()
    )
    assert manual == pytest.approx(best["score"], rel=1e-9)
    args[args.index("40")] = "60"
    assert _lcsc(*args, cwd=tmp_path).returncode == 0
    assert (work / "history.jsonl").read_text().splitlines()[:40] == lines
    assert len((work / "history.jsonl").read_text().splitlines()) == 60
    # --groups none: one vector for all, as Algorithm 1 (which takes no groups) searches
    for extra in (["--groups", "none"], ["--method", "evolutionary"]):
        one = tmp_path / f"one{len(extra[1])}"
        flags = [*args[: args.index("--workdir")], "--workdir", str(one), *extra]
        proc = _lcsc(*flags, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "searching one coefficient vector" in proc.stdout
        single = json.loads((one / "best_coefficients.json").read_text())
        assert "groups" not in single and len(single["coefficients"]) == len(traj)
        merged = read_checkpoint(one / "best.safetensors").tensors
        assert torch.equal(merged["0.weight"], traj.combine(single["coefficients"])["0.weight"])


def test_a_reader_that_stops_early_gets_no_traceback(recorded: Path) -> None:
    """``lcsc inspect DIR | head -1``: the pipe closes before lcsc has printed everything."""
    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails, as after `head` has exited
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lcsc", "inspect", str(recorded)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr

"""Faults and bad inputs of issue 12, through the command line (numbered as in the issue).

Every failure must be one ``lcsc: error:`` line naming what is at fault, exit status 1, and leave
inputs and existing outputs as they were. The CLI runs in-process: an exception other than the
one-line error escapes ``main`` and fails the test, as a traceback would show to a user.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.atomic import TMP_PREFIX
from lcsc.checkpoint import read_checkpoint
from lcsc.cli import main
from lcsc.trajectory import Trajectory
from tests.cli.conftest import OBJECTIVE as SHARED_OBJECTIVE

OBJECTIVE = (
    SHARED_OBJECTIVE
    + """
def other(target="0.0"):
    return make(target)
"""
)


def lcsc(args: list[object]) -> int:
    return main([str(a) for a in args])


def lcsc_error(args: list[object], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``lcsc ARGS``, which must fail with exactly one error line; return that line."""
    code = lcsc(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lcsc: error:")]
    assert code == 1 and len(lines) == 1, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (by relative name, with its bytes) and folder under ``folder``."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def search_args(traj: Path, work: Path, objective: str, *extra: str, budget: int = 6) -> list:
    return [
        "search",
        traj,
        "--objective",
        objective,
        "--method",
        "random",
        "--budget",
        budget,
        "--workdir",
        work,
        *extra,
    ]


@pytest.fixture
def objective_file(tmp_path: Path) -> Path:
    path = tmp_path / "objective.py"
    path.write_text(OBJECTIVE)
    return path


# ----------------------------------------------------------------- data loss (1-2)
def test_01_merge_refuses_to_overwrite_an_input(recorded, tmp_path, capsys) -> None:
    before = snapshot(recorded)
    target = recorded / "step-0000000020.safetensors"
    line = lcsc_error(["merge", recorded, "--uniform", "-o", target], capsys)
    assert str(target) in line and "one of the trajectory's files" in line
    alias = tmp_path / "alias.safetensors"  # the same file under another name
    alias.symlink_to(target)
    line = lcsc_error(["merge", recorded, "--uniform", "-o", alias], capsys)
    assert str(alias) in line and "input" in line
    assert snapshot(recorded) == before
    # A plain folder of files given one by one, and the same folder given whole: a new file
    # with a checkpoint suffix would be read as one of its checkpoints the next time.
    plain = tmp_path / "plain"
    plain.mkdir()
    for step in (20, 40, 60):
        shutil.copy(
            recorded / f"step-{step:010d}.safetensors", plain / f"ckpt_{step:06d}.safetensors"
        )
    files = sorted(plain.iterdir())
    line = lcsc_error(["merge", *files, "--uniform", "-o", files[1]], capsys)
    assert "ckpt_000040.safetensors" in line
    line = lcsc_error(["merge", plain, "--uniform", "-o", plain / "avg.safetensors"], capsys)
    assert "avg.safetensors" in line and "would become a checkpoint" in line
    coefficients = tmp_path / "c.json"
    coefficients.write_text(json.dumps([0.25, 0.25, 0.5]))
    line = lcsc_error(["merge", plain, "--coefficients", coefficients, "-o", coefficients], capsys)
    assert "c.json" in line and "--coefficients file" in line
    assert json.loads(coefficients.read_text()) == [0.25, 0.25, 0.5]
    assert [p.name for p in sorted(plain.iterdir())] == [p.name for p in files]
    assert lcsc(["merge", recorded, "--uniform", "-o", tmp_path / "avg.safetensors"]) == 0


def test_02_search_refuses_a_workdir_in_the_trajectory_folder(
    recorded, tmp_path, objective_file, capsys
) -> None:
    before = snapshot(recorded)
    for work in (recorded, recorded / "search"):
        line = lcsc_error(search_args(recorded, work, f"{objective_file}:make"), capsys)
        assert str(work) in line and "folder of the trajectory's checkpoints" in line
    assert snapshot(recorded) == before
    assert main(["inspect", str(recorded)]) == 0


# ----------------------------------------------------------------- one line, not a traceback
def test_08_coefficients_beyond_the_float_range(recorded, tmp_path, capsys) -> None:
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"precious")
    coefficients = tmp_path / "c.json"
    merge = ["merge", recorded, "--start", 40, "--coefficients", coefficients, "-o", out]
    coefficients.write_text(json.dumps([1e308, 1e308, -1e308, -1e308, 1]))  # sums to 1 exactly
    assert "too large to combine" in lcsc_error(merge, capsys)
    # Each coefficient fits float32, but the combination of weights near 1 (BatchNorm) does not.
    coefficients.write_text(json.dumps([3e38, 3e38, -3e38, -3e38, 1]))
    line = lcsc_error(merge, capsys)
    assert str(out) in line and "overflows to NaN/Inf" in line
    assert out.read_bytes() == b"precious"


OBJECTIVE_FAULTS = {
    "09 syntax error in a module": ("module", "def make(:\n", "SyntaxError: invalid syntax"),
    "10 syntax error in a .py file": ("file", "def make(:\n", "SyntaxError: invalid syntax"),
    "11 module raises at import": ("module", "raise RuntimeError('no GPU')\n", "RuntimeError"),
    "12 factory raises": (
        "file",
        "def make():\n    raise ValueError('factory cannot start')\n",
        "make() failed: ValueError: factory cannot start",
    ),
    "12 TypeError inside the factory": (
        "file",
        "def make():\n    return int([])\n",
        "make() failed: TypeError",
    ),
    "12 unknown factory argument": ("file", OBJECTIVE, "bad --objective-arg"),
}


@pytest.mark.parametrize("case", sorted(OBJECTIVE_FAULTS))
def test_09_to_12_objective_errors_name_the_objective(
    case, recorded, tmp_path, monkeypatch, capsys
) -> None:
    form, source, message = OBJECTIVE_FAULTS[case]
    name = f"lcsc_fault_{sorted(OBJECTIVE_FAULTS).index(case)}"  # a fresh module: not cached
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    importlib.invalidate_caches()
    spec = f"{name}:make" if form == "module" else f"{tmp_path / name}.py:make"
    work = tmp_path / "work"
    extra = ["--objective-arg", "nope=1"] if "argument" in case else []
    line = lcsc_error(search_args(recorded, work, spec, *extra), capsys)
    monkeypatch.delitem(sys.modules, name, raising=False)
    assert f"--objective '{spec}'" in line and message in line
    if "syntax" in case:
        assert f"{name}.py, line 1" in line
    assert not work.exists()  # failed before any work


def test_13_merge_into_a_read_only_folder(recorded, tmpfs, capsys) -> None:
    folder = tmpfs(1 << 20)
    (folder / "old.safetensors").write_bytes(b"precious")
    tmpfs.read_only(folder)
    for out in (folder / "old.safetensors", folder / "new.safetensors"):
        line = lcsc_error(["merge", recorded, "--uniform", "-o", out], capsys)
        assert str(out) in line and "Read-only file system" in line
    assert snapshot(folder) == {"old.safetensors": b"precious"}


def test_14_merge_onto_an_existing_directory(recorded, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = lcsc_error(["merge", recorded, "--uniform", "-o", out], capsys)
    assert str(out) in line and "is a directory" in line
    assert snapshot(out) == {"keep.txt": b"mine"}


def test_15_search_workdir_in_a_read_only_folder(recorded, tmpfs, objective_file, capsys) -> None:
    folder = tmpfs(1 << 20)
    tmpfs.read_only(folder)
    work = folder / "work"
    line = lcsc_error(search_args(recorded, work, f"{objective_file}:make"), capsys)
    assert str(work) in line and "Read-only file system" in line


def test_16_disk_full_while_merge_writes(recorded, tmpfs, capsys) -> None:
    folder = tmpfs(256 << 10)
    out = folder / "merged.safetensors"
    out.write_bytes(b"precious")
    tmpfs.fill(folder)
    line = lcsc_error(["merge", recorded, "--uniform", "-o", out], capsys)
    assert str(out) in line and "No space left on device" in line
    assert out.read_bytes() == b"precious"
    assert not [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_17_disk_full_while_search_writes_best(
    recorded, tmp_path, tmpfs, objective_file, capsys
) -> None:
    first = tmp_path / "first"
    args = search_args(recorded, first, f"{objective_file}:make")
    assert lcsc(args) == 0
    folder = tmpfs(256 << 10)
    work = folder / "work"
    shutil.copytree(first, work)
    before = snapshot(work)
    tmpfs.fill(folder)
    line = lcsc_error(search_args(recorded, work, f"{objective_file}:make"), capsys)
    assert str(work / "best.safetensors") in line and "No space left on device" in line
    assert snapshot(work) == before  # the history is complete, the old outputs intact
    assert not [p for p in work.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_18_workdir_that_is_a_file(recorded, tmp_path, objective_file, capsys) -> None:
    work = tmp_path / "work"
    work.write_text("mine")
    line = lcsc_error(search_args(recorded, work, f"{objective_file}:make"), capsys)
    assert str(work) in line and "is a file, not a folder" in line
    assert work.read_text() == "mine"


def test_errors_are_one_line_in_a_real_process(recorded, tmp_path) -> None:
    """The same contract end to end: a fresh interpreter, stderr as a user sees it."""
    (tmp_path / "bad.py").write_text("def make(:\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lcsc",
            *map(str, search_args(recorded, tmp_path / "w", f"{tmp_path / 'bad.py'}:make")),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "SyntaxError" in proc.stderr


# ----------------------------------------------------------------- silent choices (20-22)
def test_20_changed_objective_is_refused_on_resume(
    recorded, tmp_path, objective_file, monkeypatch, capsys
) -> None:
    work = tmp_path / "work"
    spec = f"{objective_file}:make"
    assert lcsc(search_args(recorded, work, spec, "--objective-arg", "target=0.05")) == 0
    history = (work / "history.jsonl").read_bytes()
    capsys.readouterr()
    line = lcsc_error(search_args(recorded, work, spec, "--objective-arg", "target=0.1"), capsys)
    assert "identity.objective.args.target differs" in line
    assert 'recorded "0.05", now "0.1"' in line
    line = lcsc_error(
        search_args(recorded, work, f"{objective_file}:other", "--objective-arg", "target=0.05"),
        capsys,
    )
    assert "identity.objective.spec differs" in line
    assert (work / "history.jsonl").read_bytes() == history
    # The same objective named from another working directory resumes.
    monkeypatch.chdir(objective_file.parent)
    args = search_args(recorded, work, "objective.py:make", "--objective-arg", "target=0.05")
    assert lcsc(args) == 0
    assert (work / "history.jsonl").read_bytes() == history


def test_21_resume_says_so_and_counts_only_new_evaluations(
    recorded, tmp_path, objective_file, capsys
) -> None:
    work = tmp_path / "work"
    spec = f"{objective_file}:make"
    assert lcsc(search_args(recorded, work, spec)) == 0
    assert "resuming" not in capsys.readouterr().out
    assert lcsc(search_args(recorded, work, spec, budget=9)) == 0
    captured = capsys.readouterr()
    resumed = [line for line in captured.out.splitlines() if line.startswith("resuming:")]
    assert resumed == [f"resuming: 6 evaluations replayed from {work / 'history.jsonl'}"]
    bar = captured.err.replace("\r", "\n")
    assert " 6/9 [" in bar and " 9/9 [" in bar and " 1/9 [" not in bar  # starts from 6
    assert len((work / "history.jsonl").read_text().splitlines()) == 9


def test_22_coefficients_that_do_not_sum_to_one(recorded, tmp_path, capsys) -> None:
    a = np.full(12, 0.5 / 12)
    coefficients = tmp_path / "c.json"
    coefficients.write_text(json.dumps(a.tolist()))
    out = tmp_path / "half.safetensors"
    line = lcsc_error(["merge", recorded, "--coefficients", coefficients, "-o", out], capsys)
    assert str(coefficients) in line and "sum to 0.5, not 1" in line and "--allow-any-sum" in line
    assert not out.exists()
    merge = ["merge", recorded, "--coefficients", coefficients, "-o", out, "--allow-any-sum"]
    assert lcsc(merge) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "lcsc: warning: coefficients sum to 0.5, not 1: the weights are scaled by that factor"
    ]
    want = Trajectory.open(recorded).combine(a)
    assert torch.equal(read_checkpoint(out).tensors["0.weight"], want["0.weight"])
    # Sums of 1 up to rounding, and the EMA family, merge without a word.
    b = np.linspace(-0.5, 1.5, 12)
    coefficients.write_text(json.dumps((b / b.sum()).tolist()))
    assert lcsc(merge[:-1]) == 0
    assert main(["merge", str(recorded), "--ema", "0.9", "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert os.path.getsize(out) > 0

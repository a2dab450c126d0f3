"""``lcsc search --groups`` and ``lcsc merge`` of its per-group coefficient file: outputs,
kill -9 and resume, error lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.cli import main
from lcsc.coefficients import read_coefficients
from lcsc.search.distributed import local_launcher
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import combine_groups, module_patterns, resolve_groups
from tests.cli.conftest import OBJECTIVE
from tests.conftest import child_env, kill_when_logged


def search_args(recorded: Path, work: Path, *extra: str, budget: int = 40) -> list[str]:
    return [
        "search",
        str(recorded),
        "--objective",
        "groups_objective:make",
        "--objective-arg",
        "target=0.05",
        "--budget",
        str(budget),
        "--seed",
        "2",
        "--workdir",
        str(work),
        *extra,
    ]


@pytest.fixture
def objective_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "groups_objective.py").write_text(OBJECTIVE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_search_with_groups_writes_a_file_merge_reads(recorded: Path, objective_dir: Path) -> None:
    work = objective_dir / "work"
    args = search_args(recorded, work, "--groups", "0", "--groups", "1.weight,1.bias")
    assert main(args) == 0
    saved = json.loads((work / "best_coefficients.json").read_text())
    assert saved["groups"] == ["0", "1.weight", "1.bias", "rest"]  # rest: BatchNorm buffers, 3.*
    traj = Trajectory.open(recorded)
    coefficients, names = read_coefficients(work / "best_coefficients.json", len(traj))
    assert names == saved["groups"] and coefficients.shape == (4, len(traj))
    np.testing.assert_allclose(coefficients.sum(axis=1), 1.0, atol=1e-12)
    records = [json.loads(line) for line in (work / "history.jsonl").read_text().splitlines()]
    assert saved["score"] == min(r["score"] for r in records)
    groups = resolve_groups(traj.keys, ["0", "1.weight", "1.bias"])
    want = combine_groups(traj, groups, coefficients)
    best = read_checkpoint(work / "best.safetensors").tensors
    assert all(torch.equal(best[k], want[k]) for k in want)
    manual = sum(
        float((v.double() - 0.05).pow(2).sum()) for v in want.values() if v.is_floating_point()
    )
    assert manual == pytest.approx(saved["score"], rel=1e-6)

    out = objective_dir / "merged.safetensors"
    merge = ["merge", str(recorded), "--coefficients", str(work / "best_coefficients.json")]
    assert main([*merge, "-o", str(out)]) == 0
    merged = read_checkpoint(out)
    assert all(torch.equal(merged.tensors[k], want[k]) for k in want)
    assert json.loads(merged.metadata["lcsc_groups"]) == saved["groups"]


def test_a_file_without_groups_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"coefficients": [0.25, 0.75], "steps": [1, 2], "score": 1.0}))
    values, names = read_coefficients(path, 2)
    assert names is None and values.tolist() == [0.25, 0.75]


def test_kill_9_then_rerun_equals_uninterrupted(recorded: Path, tmp_path: Path) -> None:
    (tmp_path / "groups_objective.py").write_text(OBJECTIVE)
    budget, killed, whole = 80, tmp_path / "killed", tmp_path / "whole"
    groups = ["--groups", "0,3", "--method", "cmaes"]
    env = child_env(tmp_path)

    def command(work: Path) -> list[str]:
        return [sys.executable, "-m", "lcsc", *search_args(recorded, work, *groups, budget=budget)]

    slow = child_env(tmp_path, OBJECTIVE_DELAY_S="0.02")  # the same objective, slowed down
    proc = subprocess.Popen(command(killed), cwd=tmp_path, env=slow, stderr=subprocess.DEVNULL)
    done = kill_when_logged(proc, killed / "history.jsonl", 20)
    assert 20 <= done < budget
    for work in (killed, whole):
        finished = subprocess.run(
            command(work), cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert finished.returncode == 0, finished.stderr
        resumed = f"resuming: {done} evaluations replayed"
        assert (resumed in finished.stdout) == (work == killed), finished.stdout
    got = (killed / "history.jsonl").read_text().splitlines()
    want = (whole / "history.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"} for line in got]
    same = [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"} for line in want]
    assert strip == same
    assert (killed / "best_coefficients.json").read_text() == (
        whole / "best_coefficients.json"
    ).read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--groups", "0,nothing"], "groups: pattern 'nothing' matches no key of the checkpoints"),
        (["--groups", "0.*,*.bias"], "groups: key '0.bias' matches both '0.*' and '*.bias'"),
        (["--groups", "0,,1"], "groups: empty pattern in '0,,1'"),
        (
            ["--groups", "0", "--method", "evolutionary"],
            "--groups needs --method subspace or cmaes",
        ),
    ],
)
def test_search_errors_are_one_line_and_write_nothing(
    recorded: Path, objective_dir: Path, capsys: pytest.CaptureFixture[str], extra, message
) -> None:
    work = objective_dir / "work"
    assert main(search_args(recorded, work, *extra)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lcsc: error: ") and message in err[0], err
    assert not work.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            {"coefficients": [[1.0] + [0.0] * 11], "groups": ["nothing"]},
            "pattern 'nothing' matches no key",
        ),
        (
            {"coefficients": [[1.0] + [0.0] * 11], "groups": ["0"]},
            "groups ['0'] do not fit these checkpoints",
        ),
        (
            {"coefficients": [[1.0] * 12], "groups": ["0", "rest"]},
            "must hold one list per group (2)",
        ),
        (
            {"coefficients": [[1.0] * 12, [0.5] * 3], "groups": ["0", "rest"]},
            "of group 'rest' but there are 12",
        ),
        (
            {"coefficients": [[0.5] + [0.0] * 11, [1.0] + [0.0] * 11], "groups": ["0", "rest"]},
            "coefficients of group '0' sum to 0.5, not 1",
        ),
    ],
)
def test_merge_errors_name_the_file(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content, message
) -> None:
    path = tmp_path / "grouped.json"
    path.write_text(json.dumps(content))
    out = tmp_path / "out.safetensors"
    assert main(["merge", str(recorded), "--coefficients", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0], err
    assert not out.exists()


def test_torchrun_grouped_search_equals_one_process(recorded: Path, tmp_path: Path) -> None:
    (tmp_path / "groups_objective.py").write_text(OBJECTIVE)
    env = child_env(tmp_path)
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 300}
    grouped = ["--groups", "0|3", "--method", "cmaes"]
    one = subprocess.run(
        [sys.executable, "-m", "lcsc", *search_args(recorded, tmp_path / "one", *grouped)], **run
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*local_launcher(2), "-m", "lcsc", *search_args(recorded, tmp_path / "two", *grouped)],
        **run,
    )
    assert two.returncode == 0, two.stderr
    histories = [(tmp_path / w / "history.jsonl").read_text().splitlines() for w in ("one", "two")]
    records = [[(r["coefficients"], r["score"]) for r in map(json.loads, h)] for h in histories]
    assert records[0] == records[1] and len(records[0]) == 40  # (wall times differ)
    for name in ("best_coefficients.json", "best.safetensors"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_groups_auto_is_one_group_per_top_level_module(recorded: Path, objective_dir: Path) -> None:
    work = objective_dir / "work"
    assert main(search_args(recorded, work, "--groups", "auto", budget=12)) == 0
    saved = json.loads((work / "best_coefficients.json").read_text())
    keys = Trajectory.open(recorded).keys
    assert saved["groups"] == module_patterns(keys)  # names that merge resolves again
    assert len(saved["groups"]) == len({k.split(".")[0] for k in keys}) > 1

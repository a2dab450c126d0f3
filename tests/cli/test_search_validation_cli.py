"""``lcsc search --validation-objective``: the chosen model is the validation-best, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.cli import main
from lcsc.search import ema_init
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import combine_groups, resolve_groups
from tests.cli.conftest import OBJECTIVE


def distance(sd: dict[str, torch.Tensor], target: float) -> float:
    """The objective file's score, computed here independently of the CLI."""
    return float(
        sum((v.double() - target).pow(2).sum() for v in sd.values() if v.is_floating_point())
    )


@pytest.fixture
def command(recorded: Path, tmp_path: Path) -> list[str]:
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    objective = str(tmp_path / "obj.py") + ":make"
    return [
        "search",
        str(recorded),
        "--objective",
        objective,
        "--objective-arg",
        "target=0.05",
        "--validation-objective",
        objective,
        "--validation-arg",
        "target=0.3",
        "--method",
        "cmaes",
        "--budget",
        "50",
        "--seed",
        "1",
        "--workdir",
        str(tmp_path / "work"),
    ]


def history(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "history.jsonl").read_text().splitlines()]


def test_search_chooses_the_validation_best_and_resumes(
    command: list[str], recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    assert main(command) == 0
    out = capsys.readouterr().out
    lines = history(work)
    assert len(lines) == 50
    validated = [r["validation"] for r in lines if "validation" in r]
    chosen = min(validated, key=lambda v: (v["score"], v["index"]))
    best = json.loads((work / "best_coefficients.json").read_text())
    assert best["evaluation"] == chosen["index"] and best["validation_score"] == chosen["score"]
    assert best["score"] == lines[chosen["index"]]["score"]
    scores = [r["score"] for r in lines]
    assert best["search_best_score"] == min(scores)
    assert best["search_best_evaluation"] == scores.index(min(scores))
    assert best["search_best_evaluation"] != best["evaluation"]  # the two optima differ
    merged = read_checkpoint(work / "best.safetensors").tensors
    assert distance(merged, 0.3) == pytest.approx(chosen["score"], rel=1e-9)
    traj = Trajectory.open(recorded)
    groups = resolve_groups(traj.keys, best["groups"])  # the default: per-module vectors
    want = combine_groups(traj, groups, best["coefficients"])
    assert all(torch.equal(merged[k], want[k]) for k in traj.keys)
    assert f"validation score {chosen['score']:.6g} of the chosen model" in out
    # The same command resumes: only replayed, same outputs.
    assert main(command) == 0
    assert history(work) == lines
    assert json.loads((work / "best_coefficients.json").read_text()) == best


def test_patience_stops_the_search_early(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command[command.index("50")] = "400"
    assert main([*command, "--patience", "2", "--validate-every", "10"]) == 0
    out = capsys.readouterr().out
    lines = history(tmp_path / "work")
    validated = [(r["index"], r["validation"]["score"]) for r in lines if "validation" in r]
    # By hand: the run ends at the 2nd validation in a row that is not below the best.
    best, since, stop = float("inf"), 0, None
    for n, (_, score) in enumerate(validated):
        since = 0 if score < best else since + 1
        best = min(best, score)
        if since == 2:
            stop = n
            break
    assert stop == len(validated) - 1
    assert validated[stop][0] == len(lines) - 1 < 399  # nothing evaluated after the stop
    assert all(at % 10 == 9 for at, _ in validated)
    assert "stopped early after 2 validations without improvement" in out


def test_changed_validation_objective_is_refused(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command[command.index("50")] = "8"
    assert main(command) == 0
    before = (tmp_path / "work" / "history.jsonl").read_bytes()
    capsys.readouterr()
    command[command.index("target=0.3")] = "target=0.4"
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "identity.validation.objective.args.target differs" in err
    assert (tmp_path / "work" / "history.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (["--validation-objective", "nope.py:make"], "--validation-objective 'nope.py:make'"),
        (["--validation-arg", "1x"], "--validation-arg '1x': expected KEY=VALUE"),
        (["--validation-arg", "bogus=1"], "bad --validation-arg"),
        (["--patience", "0"], "Validation.patience must be an integer >= 1"),
    ],
)
def test_bad_validation_arguments_give_one_line(
    edit: list[str], message: str, command: list[str], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lcsc", *command, *edit], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lcsc: error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "work").exists()


def test_validation_flags_need_a_validation_objective(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    args = ["search", str(recorded), "--objective", f"{tmp_path / 'obj.py'}:make"]
    args += ["--budget", "5", "--workdir", str(tmp_path / "work"), "--patience", "3"]
    assert main(args) == 1
    assert "--patience needs --validation-objective" in capsys.readouterr().err


def test_a_huge_penalty_keeps_the_best_ema_vector(
    recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    work = tmp_path / "work"
    args = ["search", str(recorded), "--objective", f"{tmp_path / 'obj.py'}:make"]
    args += ["--method", "cmaes", "--budget", "30", "--workdir", str(work), "--penalty", "1e6"]
    assert main(args) == 0
    lines = history(work)
    rows = len(ema_init(Trajectory.open(recorded).steps))
    ema_scores = [r["score"] for r in lines[:rows]]
    assert min(r["score"] for r in lines) < min(ema_scores)  # unpenalised, others are lower
    best = json.loads((work / "best_coefficients.json").read_text())
    assert best["evaluation"] == ema_scores.index(min(ema_scores))  # but EMA* wins
    assert "validation" not in capsys.readouterr().out

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lcsc.cli import main

OBJECTIVE = """
import torch

def make(scale="1"):
    s = float(scale)
    return lambda sd: s * float(sum(v.double().pow(2).sum() for v in sd.values() if v.is_floating_point()))
"""


def test_landscape_writes_a_png_and_its_grid(recorded: Path, tmp_path: Path, capsys) -> None:
    objective = tmp_path / "norm.py"
    objective.write_text(OBJECTIVE)
    out = tmp_path / "plane.png"
    argv = ["landscape", str(recorded), "--objective", f"{objective}:make"]
    argv += ["--objective-arg", "scale=2", "--models", "5", "ema:0.9", "60"]
    assert main([*argv, "--resolution", "4", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = json.loads(out.with_suffix(".json").read_text())
    assert len(grid["scores"]) == 4 and all(len(row) == 4 for row in grid["scores"])
    assert list(grid["anchors"]) == ["5", "ema:0.9", "60"] and grid["anchors"]["5"] == [0.0, 0.0]
    assert "best" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--models", "5", "7", "60", "-o", "{tmp}/x.png"], "no checkpoint at step 7"),
        (["--models", "5", "bogus", "60", "-o", "{tmp}/x.png"], "--models bogus: expected STEP"),
        (["--models", "5", "ema:2", "60", "-o", "{tmp}/x.png"], "--models ema:2"),
        (["-o", "{tmp}/x.jpg"], "expected a .png path"),
    ],
)
def test_landscape_bad_input_is_one_line(
    recorded: Path, tmp_path: Path, capsys, extra, message
) -> None:
    objective = tmp_path / "norm.py"
    objective.write_text(OBJECTIVE)
    argv = ["landscape", str(recorded), "--objective", f"{objective}:make"]
    assert main(argv + [a.format(tmp=tmp_path) for a in extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lcsc: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()

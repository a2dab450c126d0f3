"""The layout promises: a light core, and CheckFree as a product of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lcsc.cli import build_parser

HEAVY = ("lcsc.reference", "checkfree", "sklearn", "matplotlib", "diffusers")


def test_core_imports_neither_trainers_nor_plotting_nor_sklearn() -> None:
    code = (
        "import json, sys\n"
        "import lcsc.trajectory, lcsc.search, lcsc.ema, lcsc.objectives, lcsc.cli\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.startswith(HEAVY)] == []
    assert {"lcsc.search", "lcsc.objectives.sample_fd"} <= set(loaded)  # the imports ran


def test_lcsc_help_does_not_list_checkfree(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "checkfree" not in capsys.readouterr().out.lower()


def test_checkfree_is_its_own_command() -> None:
    for argv in (["--help"], ["train", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "checkfree", *argv], capture_output=True, text=True
        )
        assert out.returncode == 0 and out.stdout.startswith("usage: checkfree")
    assert "--failure-rate" in out.stdout and "--strategy" in out.stdout

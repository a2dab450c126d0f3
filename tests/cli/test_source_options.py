"""--steps, --key, --strip-prefix and --component from the shell (help: tests/cli/test_help.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.cli import main
from lcsc.ema import ema_coefficients


def _ddp_run(folder: Path) -> list[dict[str, dict[str, torch.Tensor]]]:
    """``{"model", "ema", "optimizer"}`` files with DDP prefixes and no step in their names."""
    saved = []
    for i in range(3):
        g = torch.Generator().manual_seed(i)
        model = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(3, generator=g)}
        ema = {k: v + 1 for k, v in model.items()}
        torch.save(
            {
                "model": {f"module.{k}": v for k, v in model.items()},
                "ema": {f"module.{k}": v for k, v in ema.items()},
                "optimizer": {"state": {}, "param_groups": []},
            },
            folder / f"run_{'abc'[i]}.pt",
        )
        saved.append({"model": model, "ema": ema})
    return saved


def test_inspect_reports_key_prefix_and_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ddp_run(tmp_path)
    assert main(["inspect", str(tmp_path), "--steps", "100:300:100", "--key", "ema"]) == 0
    out = capsys.readouterr().out
    assert "layout:      folder of checkpoint files" in out
    assert "steps:       100 .. 300" in out
    assert "weights:     key 'ema' (others: model; choose with --key)" in out
    assert "prefixes:    removed 'module.'" in out
    assert "problems:    none" in out
    assert main(["inspect", str(tmp_path)]) == 1  # no numbers in the names
    assert "pass the steps explicitly (--steps)" in capsys.readouterr().out


def test_merge_with_steps_and_key(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    saved = _ddp_run(run)
    out = tmp_path / "ema.safetensors"
    args = [
        "merge",
        str(run),
        "--steps",
        "10,20,40",
        "--key",
        "ema",
        "--ema",
        "0.9",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    a = ema_coefficients([10, 20, 40], 0.9)
    got = read_checkpoint(out)
    assert json.loads(got.metadata["lcsc_steps"]) == [10, 20, 40]
    for k in ("w", "b"):
        want = sum(float(c) * s["ema"][k].double() for c, s in zip(a, saved, strict=True))
        torch.testing.assert_close(got.tensors[k].double(), want, rtol=1e-6, atol=1e-6)


def _lcsc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lcsc", *args], capture_output=True, text=True)


def test_bad_source_options_are_one_line(tmp_path: Path) -> None:
    _ddp_run(tmp_path)
    out = tmp_path / "o.safetensors"
    cases = [
        (["--steps", "1,2"], "got 2 steps for 3 files"),
        (["--steps", "1,2,3", "--key", "nope"], "run_a.pt: no key 'nope'"),
        (["--steps", "1,2,3", "--strip-prefix", "net."], "no key starts with the prefix 'net.'"),
        (["--steps", "1,2,3", "--component", "unet"], "component 'unet' given"),
    ]
    for extra, message in cases:
        proc = _lcsc("merge", str(tmp_path), "--uniform", "-o", str(out), *extra)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("lcsc: error:")]
        assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()
    proc = _lcsc("merge", str(tmp_path), "--uniform", "-o", str(out), "--steps", "1,x")
    assert proc.returncode == 2 and "expected integers" in proc.stderr


def test_inspect_reports_unpickled_objects_and_a_shared_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for step in (10, 20):
        sd = {"model.w": torch.full((2,), float(step)), "model.b": torch.zeros(1)}
        hp = {"args": argparse.Namespace(lr=0.1)}
        torch.save(
            {"state_dict": sd, "hyper_parameters": hp}, tmp_path / f"epoch=0-step={step}.ckpt"
        )
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "layout:      Lightning checkpoints" in out and "weights:     key 'state_dict'" in out
    assert "not built: argparse.Namespace" in out
    assert "hint:        every key starts with 'model.' (--strip-prefix model. removes it)" in out
    assert main(["inspect", str(tmp_path), "--strip-prefix", "model."]) == 0
    out = capsys.readouterr().out
    assert "prefixes:    removed 'model.'" in out and "hint:" not in out

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import write_checkpoint
from lcsc.cli import main
from lcsc.trajectory import Trajectory


def _train(tmp_path: Path, kind: str, name: str, *extra: str) -> Path:
    out = tmp_path / name
    rc = main(
        [
            "train",
            kind,
            "--data",
            "digits",
            "--iterations",
            "40",
            "--record-every",
            "10",
            "--out",
            str(out),
            "--batch-size",
            "32",
            "--width",
            "32",
            "--depth",
            "1",
            "--quiet",
            *extra,
        ]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    dm = _train(tmp, "dm", "dm")
    return {
        "dm": dm,
        "ct": _train(tmp, "ct", "ct", "--keep", "3", "--seed", "4"),
        "cd": _train(tmp, "cd", "cd", "--teacher", str(dm)),
    }


def test_train_then_sample_round_trip(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert sorted(p.name for p in (runs["ct"] / "trajectory").glob("step-*")) == [
        "step-0000000020.safetensors",
        "step-0000000030.safetensors",
        "step-0000000040.safetensors",
    ]
    for kind, extra in [
        ("dm", []),
        ("dm", ["--sampler", "heun", "--nfe", "5"]),
        ("dm", ["--sampler", "euler", "--nfe", "4"]),
        ("ct", []),
        ("cd", ["--nfe", "2"]),
    ]:
        out = tmp_path / f"{kind}.npy"
        rc = main(
            [
                "sample",
                str(runs[kind] / "ema.safetensors"),
                "--n",
                "10",
                "--seed",
                "3",
                "-o",
                str(out),
                *extra,
            ]
        )
        assert rc == 0
        x = np.load(out)
        assert x.shape == (10, 8, 8) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 16.0 and np.isfinite(x).all()
    assert "original units [0, 16]" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_sampling_is_deterministic_and_batch_invariant(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    ckpt = str(runs["dm"] / "final.safetensors")
    args = ["sample", ckpt, "--n", "12", "--seed", "7", "--nfe", "6"]
    assert main([*args, "-o", str(tmp_path / "a.npy")]) == 0
    assert main([*args, "--batch-size", "5", "-o", str(tmp_path / "b.npy")]) == 0
    assert main(["sample", ckpt, "--n", "12", "--seed", "8", "-o", str(tmp_path / "c.npy")]) == 0
    a, b, c = (np.load(tmp_path / f"{n}.npy") for n in "abc")
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.allclose(a, c)


def test_merged_file_samples_too(runs: dict[str, Path], tmp_path: Path) -> None:
    merged = tmp_path / "merged.safetensors"
    assert main(["merge", str(runs["ct"] / "trajectory"), "--uniform", "-o", str(merged)]) == 0
    assert main(["sample", str(merged), "--n", "4", "-o", str(tmp_path / "m.npy")]) == 0
    assert np.load(tmp_path / "m.npy").shape == (4, 8, 8)


def _last_step_moved(run: Path) -> bool:
    """Whether the last training step changed the weights (trajectory recorded every step)."""
    traj = Trajectory.open(run / "trajectory")
    last, before = traj.load(len(traj.steps) - 1), traj.load(len(traj.steps) - 2)
    return not all(torch.equal(last[k], before[k]) for k in last)


def test_train_lr_final_ends_the_schedule_there(tmp_path: Path) -> None:
    short = ("--record-every", "1", "--iterations", "6", "--lr", "2e-3")
    decay = _train(tmp_path, "ct", "decay", *short, "--lr-final", "0")
    config = json.loads((decay / "train_config.json").read_text())
    assert (config["lr"], config["lr_final"]) == (2e-3, 0.0)
    assert Trajectory.open(decay / "trajectory").steps[-2:] == [5, 6]
    # the last Adam step ran at lr 0 (lr_final) and left the weights as they were; without
    # --lr-final the same run's last step moves them
    assert not _last_step_moved(decay)
    assert _last_step_moved(_train(tmp_path, "ct", "constant", *short))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sample", "{tmp}/missing.safetensors", "--n", "2", "-o", "{tmp}/x.npy"],
            "missing.safetensors: no such file",
        ),
        (["sample", "{plain}", "--n", "2", "-o", "{tmp}/x.npy"], "no lcsc_metadata"),
        (
            ["sample", "{dm}/ema.safetensors", "--n", "2", "--sampler", "cm", "-o", "{tmp}/x.npy"],
            "--sampler cm does not fit",
        ),
        (
            [
                "sample",
                "{ct}/ema.safetensors",
                "--n",
                "2",
                "--sampler",
                "heun",
                "-o",
                "{tmp}/x.npy",
            ],
            "consistency model",
        ),
        (
            [
                "sample",
                "{dm}/ema.safetensors",
                "--n",
                "2",
                "--sampler",
                "heun",
                "--nfe",
                "4",
                "-o",
                "{tmp}/x.npy",
            ],
            "--nfe must be odd",
        ),
        (["sample", "{dm}/ema.safetensors", "--n", "0", "-o", "{tmp}/x.npy"], "--n must be"),
        (
            ["train", "cd", "--iterations", "5", "--out", "{tmp}/o"],
            "TrainConfig.teacher is required",
        ),
        (
            ["train", "dm", "--iterations", "5", "--out", "{tmp}/o", "--teacher", "{dm}"],
            "TrainConfig.teacher is only allowed",
        ),
        (
            ["train", "dm", "--iterations", "0", "--out", "{tmp}/o"],
            "TrainConfig.iterations must be",
        ),
        (
            ["train", "dm", "--iterations", "5", "--out", "{tmp}/o", "--data", "{tmp}/none.npz"],
            "none.npz: no such dataset",
        ),
        (
            ["train", "dm", "--iterations", "5", "--out", "{tmp}/o", "--width", "0"],
            "ModelConfig.width",
        ),
        (
            ["train", "cd", "--iterations", "5", "--out", "{tmp}/o", "--teacher", "{ct}"],
            "must be a diffusion model",
        ),
        (["train", "dm", "--iterations", "5", "--out", "{dm}"], "already holds a training run"),
        (
            ["train", "dm", "--iterations", "5", "--out", "{tmp}/o", "--lr-final", "2e-3"],
            "TrainConfig.lr_final",
        ),
    ],
)
def test_bad_arguments_give_one_line_errors(
    runs: dict[str, Path], tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    plain = tmp_path / "plain.safetensors"
    write_checkpoint(plain, {"w": torch.zeros(2)})
    values = {"tmp": tmp_path, "plain": plain, "dm": runs["dm"], "ct": runs["ct"]}
    assert main([a.format(**values) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lcsc: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.npy").exists()

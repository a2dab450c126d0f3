"""Sharded checkpoints (``*.index.json`` + shards): read as one, sized and fingerprinted as all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.cli import main
from lcsc.errors import CheckpointError
from lcsc.inspection import inspect_paths
from lcsc.trajectory import Trajectory

STEPS = [10, 20, 30]
INDEX = "diffusion_pytorch_model.safetensors.index.json"
SHARDS = ("diffusion_pytorch_model-00001-of-00002.safetensors",)
SHARDS += ("diffusion_pytorch_model-00002-of-00002.safetensors",)


def _state(step: int, prefix: str = "") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    names = ("conv.weight", "conv.bias", "out.weight", "out.bias")
    return {prefix + n: torch.randn(4, 3, generator=g) for n in names}


def _save_sharded(folder: Path, state: dict[str, torch.Tensor], **metadata: str) -> None:
    """The layout of diffusers' ``save_pretrained(max_shard_size=...)``, written by safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    halves = {SHARDS[0]: keys[:2], SHARDS[1]: keys[2:]}
    for shard, names in halves.items():
        safetensors.torch.save_file(
            {k: state[k] for k in names}, folder / shard, metadata=metadata or None
        )
    weight_map = {k: shard for shard, names in halves.items() for k in names}
    (folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """``checkpoint-<step>/unet/`` folders, each holding a sharded UNet-like state dict."""
    for step in STEPS:
        _save_sharded(tmp_path / "run" / f"checkpoint-{step}" / "unet", _state(step))
    return tmp_path / "run"


def test_read_as_one_checkpoint_of_all_shards(run: Path) -> None:
    index = run / "checkpoint-10" / "unet" / INDEX
    ckpt = read_checkpoint(index)
    want = _state(10)
    assert set(ckpt.tensors) == set(want)
    assert all(torch.equal(ckpt.tensors[k], v) for k, v in want.items())
    assert ckpt.files == (index, *(index.parent / s for s in SHARDS))


def test_nbytes_counts_the_index_and_every_shard(run: Path) -> None:
    traj = Trajectory.from_paths([run])
    assert traj.steps == STEPS
    on_disk = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert traj.nbytes == on_disk
    assert inspect_paths([run]).bytes == on_disk
    # A trajectory that fails to open still reports what lies on disk.
    (run / "checkpoint-30" / "unet" / SHARDS[1]).unlink()
    broken = inspect_paths([run])
    assert broken.problems and SHARDS[1] in broken.problems[0]
    assert broken.bytes == sum(p.stat().st_size for p in run.rglob("*") if p.is_file())


def test_fingerprint_covers_every_shard(run: Path, tmp_path: Path) -> None:
    before = Trajectory.from_paths([run]).fingerprint()
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)  # the same files in another place: the same trajectory
    assert Trajectory.from_paths([copy]).fingerprint() == before
    # Rewrite the second shard of one checkpoint only: the index is unchanged.
    index = (run / "checkpoint-20" / "unet" / INDEX).read_bytes()
    _save_sharded(run / "checkpoint-20" / "unet", _state(20), note="retrained")
    assert (run / "checkpoint-20" / "unet" / INDEX).read_bytes() == index
    assert Trajectory.from_paths([run]).fingerprint() != before


OBJECTIVE = """
def make():
    def objective(sd):
        return float(sum(v.double().pow(2).sum() for v in sd.values()))
    return objective
"""


def test_resume_on_a_changed_shard_is_refused(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    work = tmp_path / "work"
    search = ["search", str(run), "--objective", f"{tmp_path / 'objective.py'}:make"]
    search += ["--method", "random", "--budget", "4", "--workdir", str(work)]
    assert main(search) == 0
    history = (work / "history.jsonl").read_bytes()
    _save_sharded(run / "checkpoint-30" / "unet", _state(30), note="retrained")
    capsys.readouterr()
    assert main(search) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lcsc: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "identity.fingerprint differs" in lines[0] and str(work) in lines[0]
    assert (work / "history.jsonl").read_bytes() == history


def test_wrapper_prefix_stripped_across_shards(tmp_path: Path) -> None:
    """A DDP model saved sharded: every key of every shard carries ``module.``."""
    folder = tmp_path / "ddp"
    _save_sharded(folder, _state(10, prefix="module."))
    ckpt = read_checkpoint(folder / INDEX)
    want = _state(10)
    assert set(ckpt.tensors) == set(want) and ckpt.extraction.stripped == ("module.",)
    assert all(torch.equal(ckpt.tensors[k], v) for k, v in want.items())
    combined = Trajectory.from_files([folder / INDEX, folder / INDEX], steps=[1, 2])
    np.testing.assert_allclose(combined.combine([0.5, 0.5])["out.bias"], want["out.bias"])


@pytest.mark.parametrize(
    "weight_map",
    [
        {"conv.weight": INDEX},  # an index naming itself
        {"conv.weight": "../elsewhere.safetensors"},
        {"conv.weight": 3},
    ],
)
def test_bad_weight_map_is_named(tmp_path: Path, weight_map: dict[str, object]) -> None:
    index = tmp_path / INDEX
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match="'weight_map' must map keys to shard file names"):
        read_checkpoint(index)

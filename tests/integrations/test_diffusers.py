"""A diffusers run as its example scripts save it: opened, merged and loaded back, no symlinks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

from lcsc.cli import main
from lcsc.errors import LcscError, TrajectoryError
from lcsc.trajectory import Trajectory, sources

pytest.importorskip("diffusers")
from diffusers import UNet2DModel  # noqa: E402

STEPS = [5, 10, 15, 20]
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _saved(run: Path, component: str = "unet") -> list[dict[str, torch.Tensor]]:
    """The weights as diffusers wrote them, read by safetensors itself."""
    return [
        safetensors.torch.load_file(run / f"checkpoint-{s}" / component / WEIGHTS) for s in STEPS
    ]


def _combination(states: list[dict[str, torch.Tensor]], a: list[float]) -> dict[str, torch.Tensor]:
    return {k: sum(c * s[k].double() for c, s in zip(a, states, strict=True)) for k in states[0]}


def test_layout_found_with_steps_from_folders(diffusers_run: Path) -> None:
    source = sources.find_source([diffusers_run])
    assert source.layout == sources.FOLDERS
    assert source.component == "unet" and source.components == ("unet", "unet_ema")
    assert source.config == diffusers_run / "checkpoint-20" / "unet" / "config.json"
    traj = Trajectory.from_paths([diffusers_run])
    assert traj.steps == STEPS  # checkpoint-10 sorts after checkpoint-5
    for i, state in enumerate(_saved(diffusers_run)):
        loaded = traj.load(i)
        assert set(loaded) == set(state)
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # The same run as lcsc's Recorder saw it, at the same steps: the same weights.
    recorded = Trajectory.open(diffusers_run.parent / "recorded")
    assert recorded.steps == STEPS
    assert all(torch.equal(recorded.load(3)[k], v) for k, v in traj.load(3).items())


def test_ema_component_and_missing_component(diffusers_run: Path) -> None:
    traj = Trajectory.from_paths([diffusers_run], component="unet_ema")
    ema = _saved(diffusers_run, "unet_ema")
    assert all(torch.equal(traj.load(0)[k], v) for k, v in ema[0].items())
    with pytest.raises(TrajectoryError, match=r"checkpoint-5: no component 'vae' .*unet, unet_ema"):
        Trajectory.from_paths([diffusers_run], component="vae")


def test_merge_writes_a_folder_from_pretrained_loads(
    diffusers_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = [0.1, -0.2, 0.5, 0.6]
    (tmp_path / "a.json").write_text(json.dumps(a))
    out = tmp_path / "merged"
    run = str(diffusers_run)
    assert main(["merge", run, "--coefficients", str(tmp_path / "a.json"), "-o", str(out)]) == 0
    model = UNet2DModel.from_pretrained(out)
    want = _combination(_saved(diffusers_run), a)
    got = model.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-6)
    config = json.loads((out / "config.json").read_text())
    assert config == json.loads((diffusers_run / "checkpoint-20/unet/config.json").read_text())
    # A file output stays a bare safetensors file.
    single = tmp_path / "merged.safetensors"
    assert main(["merge", run, "--uniform", "-o", str(single)]) == 0
    assert single.is_file() and set(safetensors.torch.load_file(single)) == set(want)
    # Writing again into the existing folder replaces its files.
    assert main(["merge", run, "--uniform", "--component", "unet_ema", "-o", str(out)]) == 0
    want = _combination(_saved(diffusers_run, "unet_ema"), [0.25] * 4)
    got = UNet2DModel.from_pretrained(out).state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "merged", "merged.safetensors"]


def test_inspect_names_layout_and_components(
    diffusers_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(diffusers_run), "--component", "unet_ema"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints: 4 of 4 files" in out and "steps:       5 .. 20" in out
    assert f"layout:      {sources.FOLDERS}" in out
    assert "component:   unet_ema (found: unet, unet_ema" in out


def test_checkpoint_folders_given_one_by_one(diffusers_run: Path) -> None:
    folders = [diffusers_run / f"checkpoint-{s}" for s in (15, 5, 20)]  # a shell glob's order
    traj = Trajectory.from_paths(folders)
    assert traj.steps == [5, 15, 20]
    traj = Trajectory.from_paths(folders, steps=[150, 50, 200])  # steps in the order given
    assert traj.steps == [50, 150, 200]
    assert all(torch.equal(traj.load(0)[k], v) for k, v in _saved(diffusers_run)[0].items())


def test_sharded_component(diffusers_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "sharded"
    for s in STEPS[:2]:
        model = UNet2DModel.from_pretrained(diffusers_run / f"checkpoint-{s}" / "unet")
        model.save_pretrained(run / f"checkpoint-{s}" / "unet", max_shard_size="20KB")
    index = run / "checkpoint-5" / "unet" / f"{WEIGHTS}.index.json"
    assert index.is_file() and len(list(index.parent.glob("*-of-*.safetensors"))) > 1
    traj = Trajectory.from_paths([run])
    assert traj.steps == STEPS[:2] and traj.source.files[0] == index
    for i, state in enumerate(_saved(diffusers_run)[:2]):
        assert all(torch.equal(traj.load(i)[k], v) for k, v in state.items())
    traj.save_combination(tmp_path / "merged", [0.5, 0.5])
    got = UNet2DModel.from_pretrained(tmp_path / "merged").state_dict()
    want = _combination(_saved(diffusers_run)[:2], [0.5, 0.5])
    for k, v in want.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-6)


OBJECTIVE = """
def make():
    def objective(sd):
        return float(sum(v.double().pow(2).sum() for v in sd.values()))
    return objective
"""


def test_search_best_is_a_from_pretrained_folder(
    diffusers_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "unet_obj.py").write_text(OBJECTIVE)
    monkeypatch.syspath_prepend(str(tmp_path))
    work = tmp_path / "work"
    args = ["search", str(diffusers_run), "--objective", "unet_obj:make", "--method", "random"]
    assert main([*args, "--budget", "6", "--seed", "1", "--workdir", str(work)]) == 0
    best = safetensors.torch.load_file(work / "best.safetensors")
    got = UNet2DModel.from_pretrained(work / "best").state_dict()
    assert set(got) == set(best) and all(torch.equal(got[k], v) for k, v in best.items())
    shutil.rmtree(work)


def test_outputs_that_would_join_the_run_are_refused(diffusers_run: Path, tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in diffusers_run.rglob("*") if p.is_file()}
    cases = {
        "checkpoint-25": "would become a checkpoint",
        "checkpoint-20/merged.safetensors": "would become a checkpoint",
        "checkpoint-20/unet": "diffusion_pytorch_model.safetensors: is a trajectory's file",
    }
    for out, message in cases.items():
        with pytest.raises(LcscError, match=message):
            Trajectory.from_paths([diffusers_run]).save_combination(diffusers_run / out, [0.25] * 4)
    assert {p: p.stat().st_mtime_ns for p in diffusers_run.rglob("*") if p.is_file()} == before
    merged = diffusers_run / "merged"  # beside the checkpoint folders: not part of the run
    Trajectory.from_paths([diffusers_run]).save_combination(merged, [0.25] * 4)
    assert Trajectory.from_paths([diffusers_run]).steps == STEPS
    shutil.rmtree(merged)


def test_weights_files_given_one_by_one_merge_to_a_from_pretrained_folder(
    diffusers_run: Path, tmp_path: Path
) -> None:
    """``lcsc merge out/checkpoint-*/unet_ema/diffusion_pytorch_model.safetensors -o DIR``."""
    files = [str(diffusers_run / f"checkpoint-{s}" / "unet_ema" / WEIGHTS) for s in STEPS]
    out = tmp_path / "merged"
    assert main(["merge", *files, "--uniform", "-o", str(out)]) == 0
    got = UNet2DModel.from_pretrained(out).state_dict()
    want = _combination(_saved(diffusers_run, "unet_ema"), [0.25] * 4)
    assert set(got) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-6)

"""Folder layouts of other training code: timm, Lightning, accelerate, plain folders."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from lcsc.checkpoint import write_checkpoint
from lcsc.errors import TrajectoryError
from lcsc.trajectory import Trajectory, sources


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"0.weight": torch.randn(4, 3, generator=g), "0.bias": torch.randn(4, generator=g)}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_timm_layout_keys_prefixes_and_steps(tmp_path: Path) -> None:
    states, emas = [_state(e) for e in range(3)], [_state(10 + e) for e in range(3)]
    for e in range(3):
        torch.save(
            {
                "epoch": e,
                "arch": "tiny",
                "state_dict": {f"module.{k}": v for k, v in states[e].items()},  # DDP
                "state_dict_ema": emas[e],
                "args": argparse.Namespace(lr=0.1),  # refused by weights_only
            },
            tmp_path / f"checkpoint-{e}.pth.tar",
        )
    for name in ("last.pth.tar", "model_best.pth.tar"):
        torch.save({"state_dict": states[2]}, tmp_path / name)
    source = sources.find_source([tmp_path])
    assert source.layout == sources.TIMM
    assert sorted(p.name for p in source.ignored) == ["last.pth.tar", "model_best.pth.tar"]
    assert "epochs" in source.notes[0]
    traj = Trajectory.from_paths([tmp_path])
    assert traj.steps == [0, 1, 2]
    assert all(_equal(traj.load(i), states[i]) for i in range(3))
    e = traj.extraction
    assert (e.key, e.other_keys, e.stripped) == ("state_dict", ("state_dict_ema",), ("module.",))
    assert e.placeholders == ("argparse.Namespace",)
    ema = Trajectory.from_paths([tmp_path], key="state_dict_ema", steps=[390, 780, 1170])
    assert ema.steps == [390, 780, 1170] and _equal(ema.load(2), emas[2])


def test_lightning_layout(tmp_path: Path) -> None:
    ckpts = tmp_path / "version_0" / "checkpoints"
    ckpts.mkdir(parents=True)
    states = [_state(i) for i in range(3)]
    names = ["epoch=0-step=5.ckpt", "epoch=1-step=10.ckpt", "epoch=2-step=15-v1.ckpt"]
    for name, s in zip(names, states, strict=True):
        sd = {f"model.{k}": v for k, v in s.items()} | {"loss_fn.scale": torch.ones(1)}
        torch.save({"state_dict": sd, "global_step": 0, "hyper_parameters": {}}, ckpts / name)
    torch.save({"state_dict": {}}, ckpts / "last.ckpt")
    source = sources.find_source([tmp_path / "version_0"])  # descends into checkpoints/
    assert source.layout == sources.LIGHTNING and [p.name for p in source.ignored] == ["last.ckpt"]
    traj = Trajectory.from_paths([tmp_path / "version_0"], strip_prefix="model.")
    assert traj.steps == [5, 10, 15]  # step=, not the -v1 suffix
    assert all(_equal(traj.load(i), states[i]) for i in range(3))
    assert traj.extraction.dropped == 1 and traj.extraction.stripped == ("model.",)
    with pytest.raises(TrajectoryError, match="component 'unet' given, but this is a Lightning"):
        sources.find_source([ckpts], component="unet")
    # Outputs: a new epoch=E-step=S.ckpt would join the run, other names would not.
    assert sources.lists_as_checkpoint(source, ckpts / "epoch=9-step=99.ckpt")
    assert not sources.lists_as_checkpoint(source, ckpts / "avg.safetensors")
    assert not sources.lists_as_checkpoint(source, tmp_path / "epoch=9-step=99.ckpt")


def test_accelerate_automatic_checkpoint_folders(tmp_path: Path) -> None:
    states = [_state(i) for i in range(3)]
    for i, s in enumerate(states):
        folder = tmp_path / "checkpoints" / f"checkpoint_{i}"
        folder.mkdir(parents=True)
        write_checkpoint(folder / "model.safetensors", s)
        torch.save({"state": {}}, folder / "optimizer.bin")
        (folder / "random_states_0.pkl").write_bytes(b"not read")
    source = sources.find_source([tmp_path / "checkpoints"])
    assert (source.layout, source.component, source.components) == (
        sources.FOLDERS,
        "model",
        ("model",),
    )
    assert source.config is None and "save indices" in source.notes[0]
    traj = Trajectory.from_paths([tmp_path / "checkpoints"], steps=[100, 200, 300])
    assert traj.steps == [100, 200, 300] and _equal(traj.load(1), states[1])


def test_several_components_need_a_choice(tmp_path: Path) -> None:
    for part in ("transformer", "text_encoder"):
        write_checkpoint(tmp_path / "checkpoint-10" / part / "model.safetensors", _state(0))
    with pytest.raises(TrajectoryError, match=r"several model components .*--component"):
        sources.find_source([tmp_path])
    assert sources.find_source([tmp_path], "transformer").component == "transformer"


def test_flat_folder_ignores_unnumbered_files(tmp_path: Path) -> None:
    for step in (100, 200):
        write_checkpoint(tmp_path / f"ckpt_{step:06d}.safetensors", _state(step))
    write_checkpoint(tmp_path / "best.safetensors", _state(0))
    source = sources.find_source([tmp_path])
    assert source.layout == sources.FLAT and [p.name for p in source.ignored] == [
        "best.safetensors"
    ]
    assert Trajectory.from_paths([tmp_path]).steps == [100, 200]


def test_several_series_in_one_folder(tmp_path: Path) -> None:
    for step in (1000, 2000):  # openai guided-diffusion's names
        torch.save(_state(step), tmp_path / f"model{step:06d}.pt")
        torch.save(_state(step + 1), tmp_path / f"ema_0.9999_{step:06d}.pt")
    with pytest.raises(TrajectoryError, match=r"several series .*ema_0\.9999_\*\.pt, model\*\.pt"):
        Trajectory.from_paths([tmp_path])
    ema = Trajectory.from_paths(sorted(tmp_path.glob("ema_0.9999_*.pt")))  # the shell's glob
    assert ema.steps == [1000, 2000] and _equal(ema.load(1), _state(2001))


@pytest.mark.parametrize(
    ("path", "step"),
    [
        ("out/checkpoint-500/unet/diffusion_pytorch_model.safetensors", 500),
        ("out/checkpoint_3/model.safetensors", 3),
        ("logs/epoch=3-step=1200-v1.ckpt", 1200),
        ("checkpoint-7.pth.tar", 7),
        ("ema_0.9999_012000.pt", 12000),
        ("runs/exp3/final.pt", None),  # an experiment's number is no step
        ("/tmp/pytest-7/test0/final.pt", None),
    ],
)
def test_step_from_path(path: str, step: int | None) -> None:
    assert sources.step_from_path(Path(path)) == step


def test_parse_steps() -> None:
    assert sources.parse_steps("10,20,30") == [10, 20, 30]
    assert sources.parse_steps("500:2000:500") == [500, 1000, 1500, 2000]
    for bad in ("10,x", "1:2", "5:1:1", "1:5:0", ""):
        with pytest.raises(TrajectoryError, match="expected integers"):
            sources.parse_steps(bad)


def _component_run(root: Path) -> None:
    """``checkpoint-<step>/{unet,unet_ema}/`` as diffusers saves them: same names and shapes."""
    for step in (5, 10, 15):
        for i, component in enumerate(("unet", "unet_ema")):
            folder = root / f"checkpoint-{step}" / component
            folder.mkdir(parents=True)
            write_checkpoint(folder / "diffusion_pytorch_model.safetensors", _state(step + i))
            (folder / "config.json").write_text(f'{{"_class_name": "UNet2DModel", "n": {i}}}')


def test_component_files_given_one_by_one_keep_their_config(tmp_path: Path) -> None:
    _component_run(tmp_path)
    files = sorted(tmp_path.glob("checkpoint-*/unet_ema/diffusion_pytorch_model.safetensors"))
    source = sources.find_source(files)
    assert source.config == tmp_path / "checkpoint-15" / "unet_ema" / "config.json"
    traj = Trajectory.from_paths(files)
    assert traj.steps == [5, 10, 15] and traj.writes_folder(tmp_path / "merged")
    weights = traj.save_combination(tmp_path / "merged", [0.2, 0.3, 0.5])
    assert weights == tmp_path / "merged" / "diffusion_pytorch_model.safetensors"
    assert (tmp_path / "merged" / "config.json").read_bytes() == source.config.read_bytes()
    # Other files with a config.json beside them are no component: no folder output.
    (tmp_path / "flat").mkdir()
    for step in (1, 2):
        write_checkpoint(tmp_path / "flat" / f"w_{step}.safetensors", _state(step))
    (tmp_path / "flat" / "config.json").write_text("{}")
    assert sources.find_source(sorted((tmp_path / "flat").glob("w_*"))).config is None


def test_components_have_different_fingerprints(tmp_path: Path) -> None:
    """unet/ and unet_ema/ hold files of the same names and sizes: a search resumed on the
    other component must not replay this one's scores."""
    _component_run(tmp_path)
    unet = Trajectory.from_paths([tmp_path])
    ema = Trajectory.from_paths([tmp_path], component="unet_ema")
    assert unet.nbytes == ema.nbytes and unet.fingerprint() != ema.fingerprint()
    files = sorted(tmp_path.glob("checkpoint-*/unet_ema/diffusion_pytorch_model.safetensors"))
    assert Trajectory.from_paths(files).fingerprint() == ema.fingerprint()


def test_a_folder_of_runs_names_them(tmp_path: Path) -> None:
    """``lightning_logs/`` holds one run per ``version_N/``: lcsc says which to give."""
    from lcsc.inspection import inspect_paths

    logs = tmp_path / "lightning_logs"
    for version in (0, 1):
        folder = logs / f"version_{version}" / "checkpoints"
        folder.mkdir(parents=True)
        for step in (5, 10):
            torch.save({"state_dict": _state(step)}, folder / f"epoch=0-step={step}.ckpt")
    (logs / "notes").mkdir()  # no checkpoints: not named
    want = (
        f"{logs}: no checkpoints found; its subfolders version_0, version_1 hold runs: give one,"
        f" e.g. {logs / 'version_0'}"
    )
    with pytest.raises(TrajectoryError) as info:
        Trajectory.from_paths([logs])
    assert str(info.value) == want
    report = inspect_paths([logs])
    assert report.problems == [want] and not any("parameters" in ln for ln in report.lines())
    assert Trajectory.from_paths([logs / "version_1"]).steps == [5, 10]

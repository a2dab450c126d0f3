"""The diffusers UNet objective on a tiny UNet2DModel run, scored in the digits feature space."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from lcsc.cli import main
from lcsc.errors import LcscError
from lcsc.metrics import FeatureStats, digits_features, frechet_distance

pytest.importorskip("diffusers")
from diffusers import (  # noqa: E402
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)

from lcsc.integrations.diffusers_objective import unet_fd  # noqa: E402

SPEC = "lcsc.integrations.diffusers_objective:unet_fd"
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw digits-net features (N, 64) of the real digits, as an .npz under ``feats``."""
    from lcsc.reference.digits.data import load_digits_split

    x = load_digits_split()[0].reshape(-1, 1, 8, 8)
    with torch.no_grad():
        feats = digits_features("main")(x).double().numpy()
    path = tmp_path_factory.mktemp("ref") / "digits.npz"
    np.savez(path, feats=feats)
    return path


def _args(run: Path, reference: Path, **extra: str) -> dict[str, str]:
    base = {"run": str(run), "reference": str(reference), "reference_key": "feats"}
    return {**base, "samples": "48", "batch_size": "20", "steps": "4", **extra}


def _pipeline_features(
    unet: UNet2DModel, pipeline: type, scheduler: object, n: int, seed: int
) -> torch.Tensor:
    """Samples from diffusers' own pipeline with the documented noise seed (4 * seed: the search
    role, first stream), mapped back to [-1, 1]; features straight from the digits net."""
    pipe = pipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(4 * seed)
    images = pipe(batch_size=n, generator=g, num_inference_steps=4, output_type="pt").images
    with torch.no_grad():
        feats = digits_features("main")(images * 2 - 1)
    return feats


@pytest.mark.parametrize(
    ("name", "pipeline", "scheduler"),
    [
        ("ddim", DDIMPipeline, DDIMScheduler),
        ("dpm-solver", DDPMPipeline, DPMSolverMultistepScheduler),
    ],
)
def test_score_is_the_fd_of_the_pipelines_samples(
    diffusers_run: Path, reference: Path, name: str, pipeline: type, scheduler: type
) -> None:
    folder = diffusers_run / "checkpoint-15" / "unet"
    objective = unet_fd(**_args(diffusers_run, reference, scheduler=name, noise_seed="3"))
    score = objective(safetensors.torch.load_file(folder / WEIGHTS))
    feats = _pipeline_features(
        UNet2DModel.from_pretrained(folder), pipeline, scheduler(), 48, seed=3
    )
    real = FeatureStats.from_features(np.load(reference)["feats"])
    want = frechet_distance(real, FeatureStats.from_features(feats))
    assert score == pytest.approx(want, rel=1e-5)
    assert score > 1.0  # an untrained UNet is far from the digits


def test_fixed_noise_makes_the_score_a_function_of_the_weights(
    diffusers_run: Path, reference: Path
) -> None:
    states = [
        safetensors.torch.load_file(diffusers_run / f"checkpoint-{s}" / "unet" / WEIGHTS)
        for s in (5, 20)
    ]
    a = unet_fd(**_args(diffusers_run, reference))
    b = unet_fd(**_args(diffusers_run, reference, batch_size="48"))  # batching changes nothing
    scores = [a(states[0]), a(states[1]), a(states[0])]
    assert scores[0] == scores[2] and scores[0] != scores[1]
    assert b(states[0]) == pytest.approx(scores[0], rel=1e-6)
    other = unet_fd(**_args(diffusers_run, reference, noise_seed="1"))
    assert other(states[0]) != scores[0]


def _cli_args(run: Path, args: dict[str, str]) -> list[str]:
    out = ["search", str(run), "--component", "unet", "--objective", SPEC]
    for k, v in args.items():
        out += ["--objective-arg", f"{k}={v}"]
    return out


def test_search_through_the_cli(diffusers_run: Path, reference: Path, tmp_path: Path) -> None:
    args = _args(diffusers_run, reference, samples="32", steps="2")
    cli = [*_cli_args(diffusers_run, args), "--method", "random", "--budget", "3", "--seed", "0"]
    scores = []
    for name in ("a", "b"):
        assert main([*cli, "--workdir", str(tmp_path / name)]) == 0
        scores.append(json.loads((tmp_path / name / "best_coefficients.json").read_text()))
    assert scores[0]["score"] == scores[1]["score"]  # same seed, same noise: the same search
    assert scores[0]["coefficients"] == scores[1]["coefficients"]
    best = UNet2DModel.from_pretrained(tmp_path / "a" / "best")
    rescored = unet_fd(**args)(best.state_dict())
    assert rescored == pytest.approx(scores[0]["score"], rel=1e-6)


def test_a_user_module_as_features(diffusers_run: Path, tmp_path: Path) -> None:
    (tmp_path / "my_features.py").write_text(
        "import torch\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))\n"
    )
    spec = f"{tmp_path / 'my_features.py'}:make"
    np.savez(tmp_path / "ref.npz", mu=np.zeros(5), sigma=np.eye(5))
    objective = unet_fd(
        **_args(diffusers_run, tmp_path / "ref.npz", features=spec, reference_key="")
    )
    state = safetensors.torch.load_file(diffusers_run / "checkpoint-5" / "unet" / WEIGHTS)
    samples = objective.generator(state)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    with torch.no_grad():
        fake = FeatureStats.from_features(net(samples))
    want = frechet_distance(FeatureStats(np.zeros(5), np.eye(5), 0), fake)
    assert objective(state) == pytest.approx(want, rel=1e-9)


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *parts: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for part in parts:
        assert part in err


def test_bad_input_is_one_line(
    diffusers_run: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = ["--budget", "2", "--workdir", str(tmp_path / "work")]
    bare = tmp_path / "bare"  # weights without their config.json
    (bare / "checkpoint-5" / "unet").mkdir(parents=True)
    (bare / "checkpoint-5" / "unet" / WEIGHTS).write_bytes(
        (diffusers_run / "checkpoint-5" / "unet" / WEIGHTS).read_bytes()
    )
    cases = {
        "no config": (
            {"run": str(bare)},
            ("no config.json of component 'unet'", str(bare)),
        ),
        "bad npz key": ({"reference_key": "nope"}, (str(reference), "'nope'", "feats")),
        "bad scheduler": ({"scheduler": "euler"}, ("scheduler 'euler'", "ddim, dpm-solver")),
        "dimensions": (
            {"features": "digits-alt"},
            (str(reference), "64 dimensions", "48"),
        ),
        "no reference": ({"reference": str(tmp_path / "x.npz")}, ("x.npz: no such",)),
    }
    for extra, parts in cases.values():
        argv = _cli_args(diffusers_run, {**_args(diffusers_run, reference), **extra})
        _fails(capsys, [*argv, *work], SPEC, *parts)
    config = diffusers_run / "checkpoint-5" / "unet" / "config.json"
    ddpm = tmp_path / "ddpm"
    from diffusers import DDPMScheduler

    DDPMScheduler().save_pretrained(ddpm)
    argv = _cli_args(diffusers_run, _args(config, reference, scheduler=str(ddpm)))
    _fails(capsys, [*argv, *work], "DDPMScheduler config", f"scheduler_config={ddpm}")
    assert not (tmp_path / "work").exists()  # nothing written before the objective was built


def test_scheduler_config_from_a_pipeline_folder(
    diffusers_run: Path, reference: Path, tmp_path: Path
) -> None:
    from diffusers import DDPMScheduler

    DDPMScheduler(beta_schedule="squaredcos_cap_v2").save_pretrained(
        tmp_path / "pipe" / "scheduler"
    )
    state = safetensors.torch.load_file(diffusers_run / "checkpoint-10" / "unet" / WEIGHTS)
    cosine = unet_fd(**_args(diffusers_run, reference, scheduler_config=str(tmp_path / "pipe")))
    assert cosine.generator.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    DDIMScheduler(beta_schedule="squaredcos_cap_v2").save_pretrained(tmp_path / "ddim")
    same = unet_fd(**_args(diffusers_run, reference, scheduler=str(tmp_path / "ddim")))
    assert same(state) == cosine(state)
    assert unet_fd(**_args(diffusers_run, reference))(state) != cosine(state)
    both = _args(diffusers_run, reference, scheduler=str(tmp_path / "ddim"), scheduler_config="x")
    with pytest.raises(LcscError, match="scheduler_config=x goes with scheduler=ddim"):
        unet_fd(**both)


def test_importing_the_objective_loads_neither_diffusers_nor_the_trainers() -> None:
    code = (
        "import json, sys\n"
        "import lcsc.integrations.diffusers_objective\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.startswith(("diffusers", "lcsc.reference"))] == []


def test_without_diffusers_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from lcsc.integrations.diffusers_objective import load_scheduler

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(
        LcscError, match=r"needs the package 'diffusers': pip install 'lcsc\[diffusers\]'"
    ):
        load_scheduler("ddim")


def test_shards_of_the_sampler_are_rows_of_its_samples(
    diffusers_run: Path, reference: Path
) -> None:
    state = safetensors.torch.load_file(diffusers_run / "checkpoint-20" / "unet" / WEIGHTS)
    objective = unet_fd(**_args(diffusers_run, reference, batch_size="16"))
    sampler = objective.generator
    whole = sampler(state)
    cut = 2 * 16  # on the batch grid, so each row sees the same batch as in the whole
    parts = [sampler.shard(0, cut)(state), sampler.shard(cut, len(sampler))(state)]
    assert torch.equal(torch.cat(parts), whole)
    # --split samples takes it; outside a process group it is one share, the same score.
    assert objective.split_samples()(state) == pytest.approx(objective(state), rel=1e-9)

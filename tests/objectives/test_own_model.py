"""The recipe of docs/metrics.md "Objectives for your own model": a user's sampler wrapped with
the fixed-noise FD objective, reference statistics from an .npz, through the Python API and the
CLI. The sampler is ``a * noise + shift``, whose FD against the noise itself is known in closed
form: ``|shift + (a - 1) m|^2 + (1 - |a|)^2 tr(S)`` (m, S: the noise's mean and covariance; the
samples' covariance is ``a^2 S``, so ``tr sqrt(S a^2 S) = |a| tr S``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from lcsc.cli import main
from lcsc.objectives import fixed_noise, load_objective

# The recipe's factory file, with the trivial sampler as "your model".
RECIPE = """
import torch
from lcsc.metrics import load_reference
from lcsc.objectives import SampleFD, fixed_noise, load_extractor

def make(reference, scale="1", samples="300", features="MODULE:ATTR"):
    noise = fixed_noise(int(samples), (4,), seed=0, role="search")  # the same at every call

    def sampler(state_dict):
        return float(scale) * noise + state_dict["shift"]

    extractor = torch.nn.Identity() if features == "MODULE:ATTR" else load_extractor(features)
    return SampleFD(sampler, extractor, load_reference(reference, extractor))
"""


@pytest.fixture
def recipe(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """The factory file, and an .npz of raw reference features: the sampler's own noise."""
    (tmp_path / "my_objective.py").write_text(RECIPE)
    noise = fixed_noise(300, (4,), 0, "search").double().numpy()
    np.savez(tmp_path / "ref.npz", features=noise)
    return tmp_path / "my_objective.py", tmp_path / "ref.npz", noise


def _closed_form(shift: np.ndarray, scale: float, noise: np.ndarray) -> float:
    d = shift + (scale - 1) * noise.mean(0)
    return float(d @ d + (1 - abs(scale)) ** 2 * np.trace(np.cov(noise, rowvar=False)))


@pytest.mark.parametrize("scale", [1.0, 0.5, -2.0])
def test_recipe_scores_the_closed_form(recipe: tuple[Path, Path, np.ndarray], scale: float) -> None:
    file, ref, noise = recipe
    objective = load_objective(f"{file}:make", {"reference": str(ref), "scale": str(scale)})
    for shift in ([0.0, 0.0, 0.0, 0.0], [0.5, -1.0, 0.0, 2.0]):
        want = _closed_form(np.array(shift), scale, noise)
        got = objective({"shift": torch.tensor(shift)})
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9)  # a float32 sampler


def test_recipe_through_lcsc_search(recipe: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    file, ref, noise = recipe
    run = tmp_path / "run"
    run.mkdir()
    g = torch.Generator().manual_seed(0)
    for step in (10, 20, 30, 40):
        shift = torch.randn(4, generator=g) + 1.0
        safetensors.torch.save_file({"shift": shift}, run / f"model-{step}.safetensors")
    work = tmp_path / "work"
    argv = [
        "search",
        str(run),
        "--objective",
        f"{file}:make",
        "--objective-arg",
        f"reference={ref}",
    ]
    argv += ["--objective-arg", "scale=0.5", "--method", "random", "--budget", "8"]
    assert main([*argv, "--seed", "0", "--workdir", str(work)]) == 0
    result = json.loads((work / "best_coefficients.json").read_text())
    best = safetensors.torch.load_file(work / "best.safetensors")["shift"].double().numpy()
    assert result["score"] == pytest.approx(_closed_form(best, 0.5, noise), rel=1e-6)


def test_an_extractor_named_by_the_recipe(recipe: tuple[Path, Path, np.ndarray]) -> None:
    """``features=digits`` with 64-dim noise: the reference is raw digits-net features."""
    file, ref, _ = recipe
    from lcsc.metrics import compute_features, digits_features

    noise = fixed_noise(300, (64,), 0, "search")
    np.savez(ref, features=compute_features(digits_features("main"), noise))
    (file.parent / "digits_objective.py").write_text(RECIPE.replace("(4,)", "(64,)"))
    objective = load_objective(
        f"{file.parent / 'digits_objective.py'}:make", {"reference": str(ref), "features": "digits"}
    )
    assert objective({"shift": torch.zeros(64)}) == pytest.approx(0.0, abs=1e-8)
    assert objective({"shift": torch.full((64,), 0.3)}) > 0.1

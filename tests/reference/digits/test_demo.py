from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lcsc.cli import main
from lcsc.errors import LcscError
from lcsc.reference.digits.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(
        iterations=200,
        record_every=10,
        keep=20,
        budget=40,
        search_samples=200,
        held_out_samples=300,
    )
    stages: list[str] = []
    results = run_demo(config, out, lambda stage, done, total: stages.append(stage))
    assert stages[0] == "train" and stages[-1] == "held-out" and "search" in stages
    return out, results


def test_demo_writes_everything(demo_out: tuple[Path, dict]) -> None:
    out, results = demo_out
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    fd = on_disk["held_out_fd"]
    assert {"raw", "ema_star", "lcsc", "training_ema", "best_checkpoint"} <= set(fd)
    assert all(np.isfinite(v) and v >= 0 for v in fd.values())
    assert on_disk["wall_time_s"] > 0 and on_disk["evaluations"] == 40
    for name in (
        "report.md",
        "coefficients.png",
        "search.png",
        "lcsc.safetensors",
        "ema_star.safetensors",
        "lcsc_coefficients.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "coefficients.png").read_bytes()[:4] == b"\x89PNG"
    assert "| LCSC |" in (out / "report.md").read_text()


def test_search_never_loses_to_ema_star_on_search_noise(demo_out: tuple[Path, dict]) -> None:
    # The search starts from the EMA grid that EMA* is chosen from.
    _, results = demo_out
    assert results["search_fd"]["LCSC"] <= results["search_fd"]["EMA*"]


def test_demo_models_sample_and_evaluate(
    demo_out: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = demo_out
    npy = tmp_path / "s.npy"
    assert (
        main(["sample", str(out / "lcsc.safetensors"), "--n", "10", "--seed", "1", "-o", str(npy)])
        == 0
    )
    x = np.load(npy)
    assert x.shape == (10, 8, 8) and x.min() >= 0 and x.max() <= 16
    capsys.readouterr()
    assert main(["evaluate", str(out / "lcsc.safetensors"), "--samples", "300"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    assert set(printed) == {"fd", "kid", "precision", "recall", "fd_alt"}
    assert float(printed["fd"]) == pytest.approx(
        json.loads((out / "results.json").read_text())["held_out"]["LCSC"]["fd"], rel=1e-6
    )


def test_bad_demo_config() -> None:
    with pytest.raises(LcscError, match="budget"):
        DemoConfig(budget=0)
    with pytest.raises(LcscError, match="method"):
        DemoConfig(method="annealing")

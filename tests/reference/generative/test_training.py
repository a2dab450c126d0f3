from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.ema import ema_coefficients
from lcsc.errors import LcscError
from lcsc.reference.generative import (
    ModelConfig,
    TrainConfig,
    initial_noise,
    load_model,
    load_state,
    model_from_metadata,
    sample,
    train,
)
from lcsc.reference.generative.losses import (
    consistency_loss,
    ct_num_levels,
    discretisation,
    huber_c,
    pseudo_huber,
)
from lcsc.trajectory import Trajectory
from tests.reference.generative.conftest import small_config, small_model


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dm_training_reduces_loss_and_records(dm_run) -> None:
    out, result = dm_run
    losses = result.losses
    assert losses.shape == (300,) and np.all(np.isfinite(losses))
    assert losses[-50:].mean() < 0.8 * losses[:50].mean()
    traj = Trajectory.open(out / "trajectory")
    assert traj.steps == [0, 50, 100, 150, 200, 250, 300]
    md = traj.metadata
    assert md["model"] == small_config("dm").model.to_dict()
    assert md["data"]["name"] == "digits" and md["training"]["kind"] == "dm"
    # The trajectory's metadata alone rebuilds the network; its last step is the final model.
    model = model_from_metadata(md)
    load_state(model, traj.load(len(traj) - 1))
    final = load_model(out / "final.safetensors")
    assert _state_equal(model.state_dict(), final.model.state_dict())
    assert _state_equal(final.model.state_dict(), result.model.state_dict())
    ema = load_model(out / "ema.safetensors")
    assert ema.metadata == md and ema.data is not None and ema.data.shape == (1, 8, 8)
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in lines] == list(range(10, 301, 10))
    assert all(entry["it_s"] > 0 and np.isfinite(entry["loss"]) for entry in lines)
    assert TrainConfig.from_dict(json.loads((out / "train_config.json").read_text())) == (
        small_config("dm")
    )


def test_ct_training_reduces_loss_and_records(ct_run, digits_train) -> None:
    out, result = ct_run
    traj = Trajectory.open(out / "trajectory")
    assert traj.steps == [0, 50, 100, 150, 200, 250, 300]
    assert traj.metadata["model"]["parametrisation"] == "cm"
    # The CT loss is not comparable across the curriculum's stages (and mostly measures the
    # target's noise): compare the first and last checkpoints on the same batches at the same
    # discretisation, and how close their one-step samples come to the data.
    levels, probs = discretisation(11, 0.002, 80.0, 7.0, -1.1, 2.0)
    z = initial_noise(500, (1, 8, 8), seed=0)

    def evaluate(index: int) -> tuple[float, float]:
        model = model_from_metadata(traj.metadata)
        load_state(model, traj.load(index))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            batches = [digits_train.x[i : i + 256] for i in range(0, 1024, 256)]
            loss = np.mean([consistency_loss(model, y, g, levels, probs).item() for y in batches])
        x = sample(model, z, "cm", 1).flatten(1)
        nearest = torch.cdist(x, digits_train.x.flatten(1)).min(1).values.mean()
        return float(loss), float(nearest)

    (loss0, near0), (loss1, near1) = evaluate(0), evaluate(len(traj) - 1)
    assert loss1 < 0.9 * loss0
    assert near1 < 0.6 * near0
    x = sample(result.ema, initial_noise(16, (1, 8, 8), seed=0), "cm", 1)
    assert x.shape == (16, 1, 8, 8) and torch.isfinite(x).all()


def test_ema_file_is_the_ema_of_the_trajectory(tmp_path: Path, digits_train) -> None:
    config = small_config(
        "dm",
        iterations=40,
        record_every=1,
        ema_rate=0.9,
        model=small_model("dm", width=32, depth=1, emb_dim=16),
    )
    train(config, tmp_path / "run", data=digits_train)
    traj = Trajectory.open(tmp_path / "run" / "trajectory")
    assert traj.steps == list(range(41))
    combined = traj.combine(ema_coefficients(traj.steps, 0.9), accumulate=torch.float64)
    ema = load_model(tmp_path / "run" / "ema.safetensors").model.state_dict()
    for key, value in ema.items():
        torch.testing.assert_close(value, combined[key], atol=2e-6, rtol=1e-5)


def test_same_seed_same_run(tmp_path: Path, digits_train) -> None:
    def run(name: str, seed: int):
        config = small_config(
            "ct",
            iterations=20,
            seed=seed,
            record_every=10,
            model=small_model("cm", width=32, depth=1, emb_dim=16, dropout=0.2),
        )
        return train(config, tmp_path / name, data=digits_train)

    a, b, c = run("a", 1), run("b", 1), run("c", 2)
    assert np.array_equal(a.losses, b.losses)
    assert _state_equal(a.model.state_dict(), b.model.state_dict())
    assert _state_equal(a.ema.state_dict(), b.ema.state_dict())
    assert not np.array_equal(a.losses, c.losses)


def test_cosine_lr_decay_schedule() -> None:
    config = small_config("dm", iterations=110, warmup=10, lr=1e-3, lr_final=1e-4)
    assert config.lr_at(5) == pytest.approx(5e-4)  # warm-up unchanged
    assert config.lr_at(10) == pytest.approx(1e-3)
    assert config.lr_at(60) == pytest.approx(5.5e-4)  # half-way down the cosine
    assert config.lr_at(110) == pytest.approx(1e-4)
    assert small_config("dm", warmup=10).lr_at(300) == small_config("dm").lr


def test_lr_decay_reaches_lr_final_in_training(tmp_path: Path, digits_train) -> None:
    model = small_model("dm", width=32, depth=1, emb_dim=16)
    config = small_config("dm", iterations=6, record_every=1, model=model, lr_final=0.0)
    train(config, tmp_path / "run", data=digits_train)
    traj = Trajectory.open(tmp_path / "run" / "trajectory")
    # the last Adam step runs at lr 0 and so leaves the weights as they were; earlier ones not
    assert _state_equal(traj.load(len(traj.steps) - 1), traj.load(len(traj.steps) - 2))
    assert not _state_equal(traj.load(len(traj.steps) - 2), traj.load(len(traj.steps) - 3))


def test_keep_window_and_compact(tmp_path: Path, digits_train) -> None:
    config = small_config(
        "ct",
        iterations=60,
        record_every=10,
        keep=3,
        compact=True,
        model=small_model("cm", width=32, depth=1, emb_dim=16),
    )
    result = train(config, tmp_path / "run", data=digits_train)
    traj = Trajectory.open(tmp_path / "run" / "trajectory")
    assert traj.steps == [40, 50, 60]
    last = traj.load(2)
    for key, value in result.model.state_dict().items():
        torch.testing.assert_close(last[key], value, atol=1e-3, rtol=0)  # float16 deltas


def test_consistency_distillation(tmp_path: Path, dm_run, ct_run, digits_train) -> None:
    dm_dir, _ = dm_run
    config = small_config("cd", iterations=30, record_every=10, teacher=str(dm_dir), distance="l2")
    result = train(config, tmp_path / "cd", data=digits_train)
    assert np.all(np.isfinite(result.losses))
    md = Trajectory.open(tmp_path / "cd" / "trajectory").metadata
    assert md["training"]["teacher"] == str((dm_dir / "ema.safetensors").resolve())
    ct_dir, _ = ct_run
    with pytest.raises(LcscError, match="diffusion model"):
        train(replace(config, teacher=str(ct_dir)), tmp_path / "cd2", data=digits_train)
    with pytest.raises(LcscError, match="no teacher"):
        train(replace(config, teacher=str(tmp_path / "none")), tmp_path / "cd3", data=digits_train)


def test_unet_trains_on_8x8(tmp_path: Path, digits_train) -> None:
    model = ModelConfig(
        kind="unet", data_shape=(1, 8, 8), channels=8, emb_dim=16, parametrisation="cm"
    )
    config = small_config("ct", iterations=5, record_every=5, batch_size=16, model=model)
    result = train(config, tmp_path / "run", data=digits_train)
    assert Trajectory.open(tmp_path / "run" / "trajectory").steps == [0, 5]
    assert load_model(tmp_path / "run" / "ema.safetensors").config == model
    assert np.all(np.isfinite(result.losses))


def test_refuses_an_existing_run(dm_run, digits_train) -> None:
    out, _ = dm_run
    with pytest.raises(LcscError, match="already holds"):
        train(small_config("dm", iterations=5), out, data=digits_train)


def test_data_shape_must_match(tmp_path: Path, digits_train) -> None:
    config = small_config("dm", model=ModelConfig(data_shape=(64,)))
    with pytest.raises(LcscError, match="shape"):
        train(config, tmp_path / "run", data=digits_train)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "gan"}, "kind"),
        ({"model": small_model("cm")}, "model"),
        ({"iterations": 0}, "iterations"),
        ({"lr": -1.0}, "lr"),
        ({"lr_final": 2e-3}, "lr_final"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"ema_rate": 1.0}, "ema_rate"),
        ({"keep": 0}, "keep"),
        ({"teacher": "somewhere"}, "teacher"),
        ({"distance": "lpips"}, "distance"),
    ],
)
def test_bad_train_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(LcscError, match=f"TrainConfig.{field}"):
        replace(small_config("dm"), **changes)


def test_train_config_round_trip() -> None:
    config = small_config("ct", keep=5)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.noise_distribution == (-1.1, 2.0)
    assert small_config("dm").noise_distribution == (-1.2, 1.2)


def test_ct_curriculum_and_discretisation() -> None:
    counts = [ct_num_levels(k, 800) for k in range(800)]
    assert counts[0] == 11 and counts[-1] == 1281
    assert counts[99] == 11 and counts[100] == 21  # K' = 800 // 8 = 100
    assert all(a <= b for a, b in zip(counts, counts[1:], strict=False))
    levels, probs = discretisation(11, 0.002, 80.0, 7.0, -1.1, 2.0)
    assert levels[0].item() == pytest.approx(0.002) and levels[-1].item() == pytest.approx(80.0)
    assert torch.all(levels[1:] > levels[:-1]) and probs.shape == (10,)
    assert probs.sum().item() == pytest.approx(1.0) and torch.all(probs > 0)


def test_pseudo_huber() -> None:
    assert huber_c(64) == pytest.approx(0.00432)
    small = torch.full((2, 4), 1e-5)
    torch.testing.assert_close(
        pseudo_huber(small, 0.01), small.square().sum(1) / 0.02, rtol=1e-3, atol=0
    )
    big = torch.full((2, 4), 10.0)
    torch.testing.assert_close(
        pseudo_huber(big, 0.01), torch.full((2,), 20.0 - 0.01), rtol=1e-4, atol=0
    )


def test_divergence_is_reported(tmp_path: Path, digits_train) -> None:
    config = small_config(
        "dm", iterations=50, lr=1e8, model=small_model("dm", width=32, depth=1, emb_dim=16)
    )
    with pytest.raises(LcscError, match="diverged at step"):
        train(config, tmp_path / "run", data=digits_train)

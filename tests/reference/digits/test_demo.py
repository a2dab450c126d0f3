from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.cli import build_parser, main
from lcsc.coefficients import read_coefficients
from lcsc.errors import LcscError
from lcsc.reference.digits.demo import DemoConfig, run_demo
from lcsc.reference.digits.evaluation import METRICS
from lcsc.reference.digits.experiment import ExperimentConfig
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import combine_groups, module_patterns, resolve_groups

SMALL = {
    "iterations": 200,
    "record_every": 10,
    "keep": 20,
    "budget": 40,
    "search_samples": 200,
    "held_out_samples": 300,
    "held_out_seeds": 2,
    "path_points": 4,
    "penalty": 0.001,  # 0.01 keeps a 40-evaluation grouped search at EMA* (a 1-point path)
}


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    stages: list[str] = []
    results = run_demo(
        DemoConfig(**SMALL), out, lambda stage, done, total, **_: stages.append(stage)
    )
    assert stages[0] == "train" and "search" in stages and "held-out" in stages
    assert stages[-1] == "Goodhart path"
    return out, results


def test_demo_writes_everything(demo_out: tuple[Path, dict]) -> None:
    out, results = demo_out
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    ids = [m["id"] for m in on_disk["models"]]
    assert ids == ["raw", "training_ema", "ema_star", "best_checkpoint", "lcsc"]
    assert len({m["name"] for m in on_disk["models"]}) == len(ids)
    fd = on_disk["held_out_fd"]
    assert set(fd) == set(ids) == set(on_disk["held_out"])
    assert all(np.isfinite(v) and v >= 0 for v in fd.values())
    for model_id, held in on_disk["held_out"].items():
        assert len(held["per_seed"]) == 2 and set(held["mean"]) == set(METRICS)
        assert held["mean"]["fd"] == pytest.approx(np.mean([v["fd"] for v in held["per_seed"]]))
        assert fd[model_id] == held["mean"]["fd"]
    assert set(on_disk["noise_floor"]) == set(METRICS)
    assert 2 <= len(on_disk["goodhart_path"]) <= 4
    assert on_disk["wall_time_s"] > 0 and on_disk["evaluations"] == 40
    for name in (
        "report.md",
        "coefficients.png",
        "search.png",
        "goodhart.png",
        "lcsc.safetensors",
        "ema_star.safetensors",
        "lcsc_coefficients.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "goodhart.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| LCSC |" in report and "| noise floor (real vs real) |" in report
    assert "Transfer report" in report and "LCSC beats EMA* on every held-out" in report


def test_demo_models_sample_and_evaluate(
    demo_out: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, results = demo_out
    npy = tmp_path / "s.npy"
    assert (
        main(["sample", str(out / "lcsc.safetensors"), "--n", "10", "--seed", "1", "-o", str(npy)])
        == 0
    )
    x = np.load(npy)
    assert x.shape == (10, 8, 8) and x.min() >= 0 and x.max() <= 16
    capsys.readouterr()
    model = str(out / "lcsc.safetensors")
    assert main(["evaluate", model, "--samples", "300", "--seeds", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    # The saved model, re-read and re-sampled from the same held-out noise, scores as the demo
    # scored it in memory: every score of every seed, and the noise floor.
    expected = results["held_out"]["lcsc"]
    for got, want in zip(printed["held_out"]["per_seed"], expected["per_seed"], strict=True):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert printed["noise_floor"] == pytest.approx(results["noise_floor"], rel=1e-9)
    assert main(["evaluate", model, "--samples", "300", "--seeds", "1"]) == 0
    table = capsys.readouterr().out
    assert {line.split()[0] for line in table.splitlines()[2:]} == set(METRICS)


def test_bad_demo_config() -> None:
    with pytest.raises(LcscError, match="budget"):
        DemoConfig(budget=0)
    with pytest.raises(LcscError, match="method"):
        DemoConfig(method="annealing")
    with pytest.raises(LcscError, match="DemoConfig.iterations must be at least 2 x"):
        DemoConfig(iterations=30, record_every=20)
    with pytest.raises(LcscError, match="held_out_seeds"):
        ExperimentConfig(held_out_seeds=0)
    assert DemoConfig(budget=np.int64(7)).budget == 7  # numpy integers are integers


def test_demo_config_shares_the_experiment_config() -> None:
    config = DemoConfig(**SMALL)
    shared = {k: v for k, v in SMALL.items() if k not in ("iterations", "record_every", "keep")}
    demo = {name: getattr(config, name) for name in ("method", "groups")}
    assert config.experiment == ExperimentConfig(**shared, **demo)
    assert DemoConfig().penalty > 0 == ExperimentConfig().penalty  # the demo's default lever
    assert (DemoConfig().groups, ExperimentConfig().groups) == ("auto", None)
    assert DemoConfig.from_dict(config.to_dict()) == config


def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    flags = ["--iterations", "100", "--budget", "12", "--search-samples", "100"]
    flags += ["--held-out-samples", "100", "--held-out-seeds", "1", "--penalty", "0"]
    assert main(["demo", "--out", str(out), *flags]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["budget"] == 12 and results["config"]["held_out_seeds"] == 1
    assert results["config"]["penalty"] == 0.0
    assert results["config"]["keep"] == DemoConfig().keep  # unset flags keep the defaults
    assert "## Transfer report" in printed and "median" in printed.splitlines()[-1]
    for name in ("lcsc.safetensors", "ema_star.safetensors"):
        assert (out / name).is_file()
    assert (results["config"]["method"], results["config"]["groups"]) == ("subspace", "auto")
    # the former default by flags, on the same training run
    old = tmp_path / "one_vector"
    old.mkdir()
    (old / "run").symlink_to(out / "run")
    flags += ["--method", "evolutionary", "--groups", "none"]
    assert main(["demo", "--out", str(old), *flags]) == 0
    results = json.loads((old / "results.json").read_text())
    assert results["groups"] is None and results["config"]["method"] == "evolutionary"
    assert results["evaluations"] == 12


def test_demo_command_bad_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--budget", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lcsc: error: DemoConfig.budget") and "\n" not in err
    assert not (tmp_path / "d").exists()  # nothing started


@pytest.fixture(scope="module")
def one_vector_out(
    demo_out: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """The demo's former default, Algorithm 1 with one coefficient vector, on demo_out's
    training run (run_demo trains only when the run is missing)."""
    out = tmp_path_factory.mktemp("one_vector")
    (out / "run").symlink_to(demo_out[0] / "run")
    config = DemoConfig(**SMALL, method="evolutionary", groups="none")
    return out, run_demo(config, out)


@pytest.mark.parametrize("which", ["demo_out", "one_vector_out"])
def test_search_starts_with_the_ema_grid_scores(which: str, request: pytest.FixtureRequest) -> None:
    """The search's first evaluations are the EMA grid's vectors (for every group), scored
    exactly as the EMA* baseline scored them (same objective, same search noise)."""
    out, results = request.getfixturevalue(which)
    header = json.loads((out / "search" / "search.json").read_text())
    lines = (out / "search" / "history.jsonl").read_text().splitlines()
    history = [json.loads(line) for line in lines]
    grid = {k: v for k, v in results["search_fd"].items() if k.startswith("ema_0")}
    assert len(header["init"]) == len(grid) >= 2
    first = history[: len(grid)]
    assert [h["coefficients"] for h in first] == header["init"]
    groups = len(results["groups"] or [None])
    for row in header["init"]:
        assert row == row[: len(row) // groups] * groups  # the same EMA vector in every group
    assert [h["score"] for h in first] == list(grid.values())
    assert results["search_fd"]["ema_star"] == min(grid.values())
    assert results["search_fd"]["lcsc"] == history[results["chosen_evaluation"]]["score"]
    assert len(history) == results["evaluations"]


def _saved_model_is_the_combination(
    out: Path, results: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """lcsc.safetensors is the combination of lcsc_coefficients.json (grouped or not), which
    is the search's chosen candidate; lcsc merge of that file rebuilds it and lcsc evaluate
    scores it as the demo scored LCSC in memory (same held-out noise)."""
    traj = Trajectory.open(out / "run" / "trajectory").select(start=1)
    saved, names = read_coefficients(out / "lcsc_coefficients.json", len(traj))
    assert names == results["groups"]
    np.testing.assert_array_equal(saved, np.array(results["lcsc_coefficients"]))
    lines = (out / "search" / "history.jsonl").read_text().splitlines()
    chosen = json.loads(lines[results["chosen_evaluation"]])["coefficients"]
    np.testing.assert_array_equal(saved.ravel(), chosen)  # row g: group g's coefficients
    if names is None:
        want = traj.combine(saved)
    else:
        want = combine_groups(traj, resolve_groups(traj.keys, names), saved)
    model = read_checkpoint(out / "lcsc.safetensors").tensors
    assert model.keys() == want.keys() and all(torch.equal(model[k], want[k]) for k in want)
    merged = out / "merged.safetensors"
    merge = ["merge", str(out / "run" / "trajectory"), "--start", "1", "-o", str(merged)]
    assert main([*merge, "--coefficients", str(out / "lcsc_coefficients.json")]) == 0
    again = read_checkpoint(merged).tensors
    assert all(torch.equal(again[k], want[k]) for k in want)
    capsys.readouterr()
    evaluate = ["evaluate", str(merged), "--samples", "300", "--seeds", "2", "--json"]
    assert main(evaluate) == 0
    printed = json.loads(capsys.readouterr().out)["held_out"]["per_seed"]
    for got, expected in zip(printed, results["held_out"]["lcsc"]["per_seed"], strict=True):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_default_demo_searches_one_vector_per_module(
    demo_out: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    out, results = demo_out
    assert (results["config"]["method"], results["config"]["groups"]) == ("subspace", "auto")
    traj = Trajectory.open(out / "run" / "trajectory").select(start=1)
    names = ["net.blocks.0", "net.blocks.1", "net.embed", "net.inp", "net.norm", "net.out"]
    assert results["groups"] == module_patterns(traj.keys) == names  # no key left: no rest
    saved = np.array(results["lcsc_coefficients"])
    assert saved.shape == (len(names), len(traj))
    np.testing.assert_allclose(saved.sum(axis=1), 1.0, atol=1e-12)
    assert np.ptp(saved, axis=0).max() > 0  # the groups were searched apart
    _saved_model_is_the_combination(out, results, capsys)
    report = (out / "report.md").read_text()
    assert f"one coefficient vector per parameter group ({len(names)} groups" in report
    assert "K x ||A - A_EMA*||_F^2 / G (the mean over the G groups' rows)" in report


def test_one_vector_demo_as_before(
    one_vector_out: tuple[Path, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    out, results = one_vector_out
    assert results["groups"] is None and results["config"]["groups"] is None
    assert np.shape(results["lcsc_coefficients"]) == (results["checkpoints"],)
    _saved_model_is_the_combination(out, results, capsys)
    report = (out / "report.md").read_text()
    assert "evolutionary search, one coefficient vector for all parameters" in report
    assert "K x ||a - a_EMA*||^2" in report


def test_demo_groups_setting() -> None:
    assert DemoConfig(groups="none").groups is None  # lcsc search's word for one vector
    assert DemoConfig(method="cmaes", groups="net.inp, net.out").groups == "net.inp, net.out"
    with pytest.raises(LcscError, match="DemoConfig.groups needs a CMA-ES method"):
        DemoConfig(method="evolutionary", groups="auto")
    with pytest.raises(LcscError, match="DemoConfig.groups must be 'auto', 'none' or comma"):
        DemoConfig(method="subspace", groups="net.inp,,net.out")
    with pytest.raises(LcscError, match="DemoConfig.groups"):
        DemoConfig(method="subspace", groups=3)


def test_demo_command_bad_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    default = parser.parse_args(["demo"]).groups  # the flag's default is the config's
    assert DemoConfig(groups=default) == DemoConfig()
    flags = ["--method", "evolutionary", "--groups", "auto"]
    assert main(["demo", "--out", str(tmp_path / "d"), *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lcsc: error: DemoConfig.groups needs") and "\n" not in err
    assert not (tmp_path / "d").exists()  # nothing started

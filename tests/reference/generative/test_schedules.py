"""Noise curriculum and momentum decay: the schedule functions against hand computations and
brute-force integration, torch's Adam under a varying beta1, training and the CLI flags."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch

from lcsc.cli import main
from lcsc.errors import LcscError
from lcsc.reference.generative import TrainConfig, train
from lcsc.reference.generative.losses import discretisation
from lcsc.reference.generative.schedules import (
    AdamMomentum,
    MomentumDecay,
    NoiseCurriculum,
    ScheduleError,
    bias_correction_fix,
    easy_share,
    log_sigma_quantile,
    lr_compensation,
    pair_probabilities,
    progress,
    sample_sigma,
)
from lcsc.trajectory import Trajectory
from tests.reference.generative.conftest import small_config, small_model

N01 = NormalDist()


# --------------------------------------------------------------------------- the ramp
def test_progress_by_hand() -> None:
    assert progress(0, 100) == 0.0
    assert progress(50, 100) == 0.5
    assert progress(25, 100, fraction=0.5) == 0.5
    assert progress(25, 100, fraction=0.5, pace=2.0) == 0.25
    assert progress(50, 100, fraction=1.0, pace=0.5) == pytest.approx(math.sqrt(0.5))
    assert progress(60, 100, fraction=0.5, pace=2.0) == 1.0  # held at the end after F*K
    assert progress(99, 100) == 0.99
    with pytest.raises(LcscError):
        progress(-1, 100)


def test_curriculum_tilt_and_momentum_beta1_by_hand() -> None:
    c = NoiseCurriculum(tilt_start=-1.0, tilt_end=3.0, fraction=0.5, pace=2.0)
    # c(k) = min(1, k / 50)^2: 0, 1/4, 1 -> tilt -1, 0, 3
    assert [c.tilt(k, 100) for k in (0, 25, 50, 80)] == [-1.0, 0.0, 3.0, 3.0]
    m = MomentumDecay(end=0.5)
    assert m.beta1(0, 100, 0.9) == 0.9  # start: the run's beta1
    assert m.beta1(25, 100, 0.9) == pytest.approx(0.8)
    assert m.beta1(50, 100, 0.95) == pytest.approx(0.725)
    m = MomentumDecay(start=0.8, end=0.4, fraction=0.25, pace=0.5)
    assert m.beta1(0, 100, 0.9) == 0.8  # an explicit start wins
    assert m.beta1(16, 100, 0.9) == pytest.approx(0.8 - 0.4 * 0.8)  # sqrt(16/25) = 0.8
    assert m.beta1(40, 100, 0.9) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("cls", "changes", "field", "text"),
    [
        (NoiseCurriculum, {"sigma_easy": 0.0}, "sigma_easy", "must be > 0"),
        (NoiseCurriculum, {"tilt_end": 11.0}, "tilt_end", "[-10, 10]"),
        (NoiseCurriculum, {"tilt_start": math.nan}, "tilt_start", "[-10, 10]"),
        (NoiseCurriculum, {"fraction": 0.0}, "fraction", "(0, 1]"),
        (NoiseCurriculum, {"pace": -1.0}, "pace", "positive"),
        (MomentumDecay, {"end": 1.0}, "end", "[0, 1)"),
        (MomentumDecay, {"start": 0.5, "end": 0.6}, "end", "must not exceed start"),
        (MomentumDecay, {"start": True}, "start", "[0, 1)"),
        (MomentumDecay, {"fraction": 1.5}, "fraction", "(0, 1]"),
        (MomentumDecay, {"compensation": "sqrt"}, "compensation", "influence, none, rms"),
    ],
)
def test_schedule_validation_names_the_field(cls, changes, field, text) -> None:
    with pytest.raises(ScheduleError) as info:
        cls(**changes)
    assert info.value.field == field and text in str(info.value)
    assert str(info.value).startswith(f"{cls.__name__}.{field} ")


# --------------------------------------------------------------------------- tilted lognormal
def _brute_force_density(p_mean: float, p_std: float, sigma_easy: float, tilt: float):
    """The tilted density of u = ln sigma on a fine grid, normalised numerically."""
    u = np.linspace(p_mean - 14 * p_std, p_mean + 14 * p_std, 400_001)
    w = np.where(u > math.log(sigma_easy), np.exp(-tilt * (u - math.log(sigma_easy))), 1.0)
    dens = np.exp(-0.5 * ((u - p_mean) / p_std) ** 2) * w
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(u))])
    return u, cdf / cdf[-1]


def test_tilted_quantiles_by_hand() -> None:
    # p_mean 0, p_std 1, sigma_easy 1 (zc = 0), tilt 1 (h = 1, ln K = 1/2):
    # body mass Phi(0) = 1/2, tail T = e^{1/2} Q(1), Z = 1/2 + T.
    tail = math.exp(0.5) * (1 - N01.cdf(1.0))
    z_total = 0.5 + tail
    assert easy_share(0.0, 1.0, 1.0, 1.0) == pytest.approx(tail / z_total, rel=1e-12)
    v = torch.tensor([0.5, 0.9], dtype=torch.float64)
    got = log_sigma_quantile(v, 0.0, 1.0, 1.0, 1.0)
    median = N01.inv_cdf(z_total * 0.5)  # in the body: Phi(z) = Z v
    upper = -N01.inv_cdf(z_total * 0.1 / math.exp(0.5)) - 1.0  # tail: K Q(z + h) = Z (1 - v)
    assert got.tolist() == pytest.approx([median, upper], rel=1e-10)
    # No tilt: the plain lognormal quantile P_mean + P_std ndtri(v).
    plain = log_sigma_quantile(v, -1.2, 1.2, 0.5, 0.0)
    assert plain.tolist() == pytest.approx([-1.2, -1.2 + 1.2 * N01.inv_cdf(0.9)], rel=1e-12)


@pytest.mark.parametrize(
    ("p_mean", "p_std", "sigma_easy", "tilt"),
    [(-1.2, 1.2, 0.5, 2.0), (-1.2, 1.2, 0.5, -1.5), (-1.1, 2.0, 1.0, 6.0), (0.3, 0.7, 0.2, 10.0)],
)
def test_tilted_distribution_matches_brute_force(p_mean, p_std, sigma_easy, tilt) -> None:
    u, cdf = _brute_force_density(p_mean, p_std, sigma_easy, tilt)
    v = np.array([0.001, 0.1, 0.37, 0.5, 0.8, 0.95, 0.999])
    got = log_sigma_quantile(torch.from_numpy(v), p_mean, p_std, sigma_easy, tilt).numpy()
    assert np.interp(got, u, cdf) == pytest.approx(v, abs=2e-6)  # F(F^-1(v)) = v
    above = 1 - np.interp(math.log(sigma_easy), u, cdf)
    assert easy_share(p_mean, p_std, sigma_easy, tilt) == pytest.approx(above, abs=2e-6)
    levels, _ = discretisation(12, 0.002, 80.0, 7.0, p_mean, p_std)
    mass = np.diff(np.interp(levels.log().numpy(), u, cdf))
    got_p = pair_probabilities(levels, p_mean, p_std, sigma_easy, tilt).numpy()
    assert got_p == pytest.approx(mass / mass.sum(), abs=2e-6)


def test_no_tilt_reproduces_the_ict_discretisation() -> None:
    levels, probs = discretisation(41, 0.002, 80.0, 7.0, -1.1, 2.0)
    got = pair_probabilities(levels, -1.1, 2.0, 0.5, 0.0)
    assert torch.allclose(got, probs, rtol=0, atol=1e-13)


def test_sampled_sigmas_follow_the_tilt() -> None:
    g = torch.Generator().manual_seed(0)
    for tilt in (0.0, 2.0):
        sigma = sample_sigma(100_000, g, -1.2, 1.2, 0.5, tilt)
        assert sigma.dtype == torch.float32 and bool((sigma > 0).all())
        share = (sigma > 0.5).double().mean().item()
        assert share == pytest.approx(easy_share(-1.2, 1.2, 0.5, tilt), abs=0.005)
    # Same generator state, same levels.
    a = sample_sigma(8, torch.Generator().manual_seed(3), -1.2, 1.2, 0.5, 2.0)
    assert torch.equal(a, sample_sigma(8, torch.Generator().manual_seed(3), -1.2, 1.2, 0.5, 2.0))


# --------------------------------------------------------------------------- momentum decay
def test_lr_compensation_and_bias_correction_by_hand() -> None:
    # A(b) = (1 + b) / (1 - b): A(0.5) = 3, A(0.9) = 19.
    assert lr_compensation(0.5, 0.9, "none") == 1.0
    assert lr_compensation(0.5, 0.9, "rms") == pytest.approx(math.sqrt(3 / 19))
    assert lr_compensation(0.5, 0.9, "stability") == pytest.approx(3 / 19)
    assert lr_compensation(0.9, 0.9, "rms") == 1.0
    # influence: 1 + O(b) - O(b'), O(b) = b / (1 - b): O(0.9) = 9, O(0.8) = 4.
    assert lr_compensation(0.9, 0.9, "influence", 0.8) == pytest.approx(6.0)
    assert lr_compensation(0.7, 0.9, "influence") == 1.0  # constant beta1: no correction
    # beta1 0.9 then 0.8: torch divides by 1 - 0.8^2 = 0.36, the weights sum to 1 - 0.72.
    assert bias_correction_fix(0.8, 2, 0.9 * 0.8) == pytest.approx(0.36 / 0.28)
    assert bias_correction_fix(0.9, 1, 0.9) == pytest.approx(1.0)
    with pytest.raises(LcscError):
        lr_compensation(0.5, 0.9, "sqrt")


def test_influence_compensation_keeps_every_gradients_total_weight() -> None:
    """(1 - b_j) sum_{t >= j} f_t prod_{j < i <= t} b_i = 1 for every j, the run followed by
    iterations at the end value (factor 1), as at a constant beta1."""
    decay = MomentumDecay(end=0.4, fraction=0.6, pace=2.0, compensation="influence")
    k_total, b0 = 50, 0.95
    betas = [decay.beta1(k, k_total, b0) for k in range(k_total + 1)]
    factors = [lr_compensation(betas[k], b0, "influence", betas[k + 1]) for k in range(k_total)]
    assert min(factors) >= 1.0 and max(factors) > 1.05
    for j in range(k_total):
        weight, decayed = 0.0, 1.0 - betas[j]
        for t in range(j, k_total):
            decayed *= betas[t] if t > j else 1.0
            weight += factors[t] * decayed
        weight += decayed * betas[-1] / (1 - betas[-1])  # after the run, at the end value
        assert weight == pytest.approx(1.0, rel=1e-12)
    # Without the correction, the decay damps the gradients of the ramp.
    assert lr_compensation(betas[10], b0, "none") == 1.0


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("compensation", ["influence", "rms"])
def test_torch_adam_follows_the_exact_varying_beta1_recursion(
    fused: bool, compensation: str
) -> None:
    decay = MomentumDecay(end=0.3, compensation=compensation, fraction=0.5)
    iterations, lr, (b1, b2), eps = 12, 0.01, (0.9, 0.99), 1e-8
    grads = torch.randn(iterations, 5, generator=torch.Generator().manual_seed(0))
    p = torch.nn.Parameter(torch.zeros(5))
    opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, fused=fused)
    schedule = AdamMomentum(decay, iterations, (b1, b2))
    theta, m, v, product = torch.zeros(5, dtype=torch.float64), 0.0, 0.0, 1.0
    for k in range(iterations):
        schedule.apply(k, opt, lr)
        p.grad = grads[k].clone()
        opt.step()
        g = grads[k].double()
        beta, beta_next = decay.beta1(k, iterations, b1), decay.beta1(k + 1, iterations, b1)
        product *= beta
        m = beta * m + (1 - beta) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - product), v / (1 - b2 ** (k + 1))
        factor = lr_compensation(beta, b1, compensation, beta_next)
        theta = theta - lr * factor * m_hat / (v_hat.sqrt() + eps)
        assert opt.param_groups[0]["betas"] == (beta, b2)
    assert torch.allclose(p.detach().double(), theta, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- training
def _tiny(kind: str = "dm", **changes) -> TrainConfig:
    model = small_model("dm" if kind == "dm" else "cm", width=32, depth=1, emb_dim=16)
    fields = {"model": model, "batch_size": 16, "record_every": 10, "log_every": 10}
    return small_config(kind, iterations=30, **{**fields, **changes})


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


ON = {"noise_curriculum": NoiseCurriculum(tilt_end=4.0), "momentum_decay": MomentumDecay()}


@pytest.mark.parametrize("kind", ["dm", "ct"])
def test_training_with_schedules_is_deterministic_and_recorded(
    kind: str, tmp_path: Path, digits_train
) -> None:
    off = train(_tiny(kind), tmp_path / "off", data=digits_train)
    config = _tiny(kind, **ON)
    a = train(config, tmp_path / "a", data=digits_train)
    b = train(config, tmp_path / "b", data=digits_train)
    assert np.array_equal(a.losses, b.losses)
    assert _same(a.model, b.model) and _same(a.ema, b.ema)
    assert not np.array_equal(a.losses, off.losses) and not _same(a.ema, off.ema)
    # Each option alone changes the run too.
    for name, value in ON.items():
        one = train(_tiny(kind, **{name: value}), tmp_path / name, data=digits_train)
        assert not np.array_equal(one.losses, off.losses)
    training = Trajectory.open(tmp_path / "a" / "trajectory").metadata["training"]
    assert training["noise_curriculum"] == ON["noise_curriculum"].to_dict()
    assert training["momentum_decay"] == ON["momentum_decay"].to_dict()
    assert (
        Trajectory.open(tmp_path / "off" / "trajectory").metadata["training"]["momentum_decay"]
        is None
    )
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert TrainConfig.from_dict(saved) == config


def test_train_config_checks_the_schedules() -> None:
    with pytest.raises(LcscError, match="TrainConfig.momentum_decay end must not exceed"):
        _tiny(momentum_decay=MomentumDecay(end=0.95))
    with pytest.raises(LcscError, match="TrainConfig.noise_curriculum must be None or"):
        _tiny(noise_curriculum=2.0)
    with pytest.raises(LcscError, match="NoiseCurriculum: unknown field"):
        _tiny(noise_curriculum={"tilt": 1.0})
    assert replace(_tiny(), momentum_decay={"end": 0.6}).momentum_decay == MomentumDecay(end=0.6)


# --------------------------------------------------------------------------- CLI
def _cli(out: Path, *extra: str) -> int:
    return main(
        ["train", "dm", "--iterations", "20", "--record-every", "10", "--out", str(out)]
        + ["--batch-size", "16", "--width", "32", "--depth", "1", "--quiet", *extra]
    )


def test_cli_flags_reach_the_training_config(tmp_path: Path) -> None:
    flags = ["--noise-curriculum", "--curriculum-tilt-end", "3", "--curriculum-fraction", "0.5"]
    flags += ["--momentum-decay", "--momentum-end", "0.6", "--momentum-compensation", "none"]
    assert _cli(tmp_path / "on", *flags) == 0
    saved = json.loads((tmp_path / "on" / "train_config.json").read_text())
    assert saved["noise_curriculum"] == NoiseCurriculum(tilt_end=3.0, fraction=0.5).to_dict()
    assert saved["momentum_decay"] == MomentumDecay(end=0.6, compensation="none").to_dict()
    assert _cli(tmp_path / "off") == 0
    saved = json.loads((tmp_path / "off" / "train_config.json").read_text())
    assert saved["noise_curriculum"] is None and saved["momentum_decay"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--curriculum-pace", "2"], "--curriculum-pace needs --noise-curriculum"),
        (["--momentum-end", "0.5"], "--momentum-end needs --momentum-decay"),
        (["--noise-curriculum", "--curriculum-tilt-end", "20"], "NoiseCurriculum.tilt_end must be"),
        (
            ["--noise-curriculum", "--curriculum-sigma", "-1"],
            "NoiseCurriculum.sigma_easy must be > 0",
        ),
        (["--noise-curriculum", "--curriculum-fraction", "0"], "NoiseCurriculum.fraction must be"),
        (["--momentum-decay", "--momentum-end", "1"], "MomentumDecay.end must be in [0, 1)"),
        (
            ["--momentum-decay", "--momentum-end", "0.95"],
            "TrainConfig.momentum_decay end must not exceed",
        ),
        (
            ["--momentum-decay", "--momentum-start", "0.5", "--momentum-end", "0.6"],
            "MomentumDecay.end must not exceed start 0.5",
        ),
        (
            ["--momentum-decay", "--momentum-pace", "0"],
            "MomentumDecay.pace must be > 0 (a positive",
        ),
    ],
)
def test_cli_schedule_errors_name_the_flag(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    assert _cli(tmp_path / "x", *extra) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lcsc: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_help_states_the_dataclass_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    options = text[text.index("options:") :]

    def default_of(flag: str) -> str:  # the "(...default...)" of the flag's own help text
        start = options.index(f" {flag} ") + len(flag) + 2
        end = options.find(" --", start)
        return options[start : end if end >= 0 else None]

    c, m = NoiseCurriculum(), MomentumDecay()
    assert f"(default: {c.sigma_easy})" in default_of("--curriculum-sigma")
    assert f"(default: {c.tilt_start})" in default_of("--curriculum-tilt-start")
    assert f"(default: {c.tilt_end})" in default_of("--curriculum-tilt-end")
    assert f"(default: {c.fraction})" in default_of("--curriculum-fraction")
    assert f"default: {c.pace})" in default_of("--curriculum-pace")
    assert f"(default: {m.end})" in default_of("--momentum-end")
    assert f"default: {m.pace})" in default_of("--momentum-pace")
    assert f"(default: {m.compensation})" in default_of("--momentum-compensation")

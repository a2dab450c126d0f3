"""Contrasts, verdicts, words and the Goodhart path on fixed inputs, against hand computations."""

from __future__ import annotations

import math

import pytest

from lcsc.reference.digits import findings
from lcsc.reference.digits.evaluation import METRICS, HeldOut
from lcsc.reference.digits.experiment import path_indices


def _held(**per_metric: tuple[float, ...]) -> HeldOut:
    n = len(next(iter(per_metric.values())))
    base = dict.fromkeys(METRICS, 1.0)
    return HeldOut(tuple(base | {m: v[i] for m, v in per_metric.items()} for i in range(n)))


def test_contrast_pairs_seeds_and_names_the_winner() -> None:
    lcsc = _held(fd=(1.0, 2.0, 3.0), fd_pixels=(2.0, 2.0, 2.0), recall=(0.5, 0.7, 0.9))
    ema = _held(fd=(2.0, 4.0, 4.0), fd_pixels=(1.0, 3.0, 1.0), recall=(0.4, 0.6, 0.8))
    c = findings.contrasts(lcsc, ema)
    assert c["fd"].ratios == (0.5, 0.5, 0.75) and c["fd"].verdict == "wins"
    assert c["fd"].differences == (-1.0, -2.0, -1.0) and c["fd"].shown() == "0.58x"
    kid = findings.contrast(_held(kid=(-0.01, 0.0, 0.01)), _held(kid=(0.02, 0.03, 0.04)), "kid")
    assert kid.shown() == "-0.03" and kid.verdict == "wins"  # a difference: KID can be < 0
    assert c["fd"].ratio == pytest.approx(0.5833333333)
    assert c["fd"].ratio_std == pytest.approx(
        math.sqrt(((0.5 - 7 / 12) ** 2 * 2 + (1 / 6) ** 2) / 2)
    )
    assert c["fd_pixels"].verdict == "ties"  # worse on seeds 0 and 2, better on seed 1
    assert c["recall"].verdict == "wins"  # higher is better for recall
    assert c["fd_alt"].verdict == "ties"  # equal everywhere
    worse = findings.contrast(ema, lcsc, "fd")
    assert worse.verdict == "loses"


def test_independent_ratios_and_words() -> None:
    lcsc = _held(fd=(0.5,), fd_pixels=(0.9,), fd_random=(1.2,), fd_pca=(0.8,), fd_mlp=(1.1,))
    ema = _held(fd=(1.0,), fd_pixels=(1.0,), fd_random=(1.0,), fd_pca=(1.0,), fd_mlp=(1.0,))
    c = findings.contrasts(lcsc, ema)
    ratios = findings.independent_ratios(c)
    assert ratios == pytest.approx(
        {"fd_pixels": 0.9, "fd_random": 1.2, "fd_pca": 0.8, "fd_mlp": 1.1, "median": 1.0}
    )
    floor = dict.fromkeys(METRICS, 0.6)  # EMA*'s FD 1.0 < 2 x floor: near the floor
    words = findings.in_words(c, floor, ema.mean)
    assert "search space (main MLP) (0.50x)" in words.split("worse")[0]
    assert "random ReLU features (1.20x)" in words.split("worse than EMA* on every seed in:")[1]
    assert "(median 1.00)" in words and "within 2x of the real-vs-real noise floor" in words


def test_path_correlations_flip_higher_is_better() -> None:
    search = [3.0, 2.0, 1.0]
    held = [
        dict.fromkeys(METRICS, 0.0) | {"fd": f, "fd_pca": p, "recall": r}
        for f, p, r in [(3, 1, 0.1), (2, 2, 0.2), (1, 3, 0.3)]
    ]
    got = findings.path_correlations(search, held)
    assert got["fd"] == pytest.approx(1.0)  # improves with the search
    assert got["fd_pca"] == pytest.approx(-1.0)  # worsens: Goodhart
    assert got["recall"] == pytest.approx(1.0)  # higher recall is better: improves
    assert math.isnan(got["kid"])  # constant along the path


def test_path_indices() -> None:
    nan = float("nan")
    scores = [5.0, 3.0, 4.0, 3.5, 2.0, nan, 2.5, 1.0, 1.0, 0.5]
    # The first 3 evaluations are the EMA grid: the path starts at its best (index 1).
    assert path_indices(scores, 3, 10) == [1, 4, 7, 9]
    assert path_indices(scores, 3, 2) == [1, 9]
    assert path_indices(scores, 3, 3) == [1, 4, 9] or path_indices(scores, 3, 3) == [1, 7, 9]
    assert path_indices(scores, 3, 0) == []
    assert path_indices([nan, 2.0], 1, 5) == [0, 1]

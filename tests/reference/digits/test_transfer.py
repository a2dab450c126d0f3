"""The digits transfer spaces and held-out evaluation: fitted on the train split only,
deterministic, scored against the test split, with the real-vs-real floor by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from lcsc.metrics import compute_features_and_logits
from lcsc.reference.digits.data import load_digits_split
from lcsc.reference.digits.evaluation import METRICS, HeldOutEvaluator, SampleScorer
from lcsc.reference.digits.transfer import TRANSFER_FDS, fit_mlp_classifier, transfer_extractors
from lcsc.reference.generative.generator import run_metadata
from lcsc.trajectory import Trajectory


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_transfer_spaces_are_deterministic_and_fitted_to_train_only() -> None:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    spaces = transfer_extractors()
    assert tuple(spaces) == TRANSFER_FDS
    refit = fit_mlp_classifier(x_tr, y_tr)  # a second fit from scratch: the same weights
    fitted, again = spaces["fd_mlp"].state_dict(), refit.state_dict()
    assert list(fitted) == list(again)
    for name, tensor in fitted.items():
        torch.testing.assert_close(tensor, again[name], rtol=0, atol=0)
    _, logits = compute_features_and_logits(spaces["fd_mlp"], x_te)
    assert (logits.argmax(1) == y_te.numpy()).mean() > 0.9  # a real classifier, on unseen data
    pca = spaces["fd_pca"]
    np.testing.assert_allclose(pca.mean.numpy(), x_tr.numpy().mean(0), atol=1e-6)


def test_floor_is_train_split_against_test_split(ct_run: Path) -> None:
    scorer = SampleScorer(run_metadata(ct_run))
    x_tr, _, x_te, _ = load_digits_split()
    assert (scorer.n_train, scorer.n_test) == (len(x_tr), len(x_te)) == (1437, 360)
    floor = scorer.floor
    assert set(floor) == set(METRICS)
    assert floor["fd_pixels"] == pytest.approx(_fd(x_tr.double().numpy(), x_te.double().numpy()))
    assert 0 < floor["fd"] < 1 and floor["confidence"] > 0.95 and floor["class_tv"] < 0.05


def test_held_out_evaluator_seeds_and_error_bars(ct_run: Path) -> None:
    md = run_metadata(ct_run)
    sd = Trajectory.open(ct_run / "trajectory").load(-1)
    two = HeldOutEvaluator(md, 100, (0, 1))(sd)
    one = HeldOutEvaluator(md, 100, (1,))(sd)
    assert one.values[0] == two.values[1]  # a seed's scores do not depend on the others
    assert two.values[0] != two.values[1]
    for m in METRICS:
        vals = [two.values[0][m], two.values[1][m]]
        assert two.mean[m] == pytest.approx(np.mean(vals))
        assert two.std[m] == pytest.approx(np.std(vals, ddof=1))
    assert one.std["fd"] == 0.0

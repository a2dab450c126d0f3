"""Optimizer behaviour at the ask/tell level: init rows, Algorithm 1, CMA-ES, random."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lcsc.errors import SearchError
from lcsc.search import CMAESConfig, EvolutionaryConfig, RandomConfig, minimize
from lcsc.search.cmaes import finite_scores
from lcsc.search.evolutionary import EvolutionaryOptimizer
from lcsc.search.subspace import SubspaceConfig

CONFIGS = [EvolutionaryConfig(), CMAESConfig(), RandomConfig(), SubspaceConfig(dims=4)]
TINY = 1e-9  # mutation scale that leaves children equal to their crossover up to ~1e-11


def drive(optimizer, scores, n):
    """Ask ``n`` candidates, telling ``scores(index, candidate)``; return the candidates."""
    out = []
    for i in range(n):
        c = optimizer.ask()
        out.append(c)
        optimizer.tell(scores(i, c))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.method)
def test_first_asks_are_the_init_rows(config, make_init) -> None:
    init = make_init(8, p=4)
    opt = config.make_optimizer(init, seed=3)
    asked = drive(opt, lambda i, c: float(i), 4)
    for row, c in zip(init, asked, strict=True):
        assert np.array_equal(row, c)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.method)
def test_candidates_sum_to_one(config, make_init, make_quadratic) -> None:
    init = make_init(30)
    f = make_quadratic(30)
    for c in drive(config.make_optimizer(init, seed=0), lambda i, c: f(c), 300):
        assert c.dtype == np.float64 and c.shape == (30,)
        assert abs(c.sum() - 1.0) < 1e-12
        assert np.isfinite(c).all()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.method)
def test_ask_tell_must_alternate(config, make_init) -> None:
    opt = config.make_optimizer(make_init(4), seed=0)
    with pytest.raises(RuntimeError):
        opt.tell(1.0)
    opt.ask()
    with pytest.raises(RuntimeError):
        opt.ask()


# ---------------------------------------------------------------- Algorithm 1


def test_children_come_from_the_previous_generation_only(make_init) -> None:
    """A great child must not become a parent before its generation is complete."""
    k, p, per_gen = 50, 3, 5
    init = make_init(k, p)
    config = EvolutionaryConfig(children_per_generation=per_gen, parents=1, select_prob=1.0)
    opt = config.make_optimizer(init, seed=0)

    def scores(i: int, c: np.ndarray) -> float:
        if i < p:
            return float(i)  # init row 0 is the best initial individual
        return -100.0 if i == p else 10.0  # the first child of generation 1 is the best

    asked = drive(opt, scores, p + 2 * per_gen)
    best_init, star = init[0], asked[p]
    for child in asked[p + 1 : p + per_gen]:  # generation 1: parent is init row 0
        assert np.linalg.norm(child - best_init) < np.linalg.norm(child - star)
    for child in asked[p + per_gen :]:  # generation 2: parent is the great child
        assert np.linalg.norm(child - star) < np.linalg.norm(child - best_init)


def test_parents_are_the_top_of_the_population(make_init) -> None:
    init = make_init(6, p=4)
    scores = [3.0, 1.0, 4.0, 2.0]  # top-2: rows 1 and 3
    config = EvolutionaryConfig(parents=2, select_prob=1.0, mutation_scale=TINY)
    opt = config.make_optimizer(init, seed=0)
    children = drive(opt, lambda i, c: scores[i] if i < 4 else 0.0, 4 + 10)[4:]
    picked = [int(np.argmin([np.abs(child - row).max() for row in init])) for child in children]
    for child, row in zip(children, picked, strict=True):
        assert np.allclose(child, init[row], atol=1e-8)
    assert set(picked) == {1, 3}  # both parents of CP are used, never rows 0 or 2


def test_uniform_crossover_mixes_coefficients_of_both_parents(make_init) -> None:
    init = make_init(12, p=2)
    config = EvolutionaryConfig(parents=2, select_prob=0.0, mutation_scale=TINY)
    opt = config.make_optimizer(init, seed=1)
    children = drive(opt, lambda i, c: float(i), 2 + 10)[2:]  # one generation
    a, b = init
    mixed = 0
    for child in children:
        # child = mix / sum(mix) where each mix_i is a_i or b_i: find the scale
        for scale in (child[0] / a[0], child[0] / b[0]):
            from_a = np.isclose(child, scale * a, rtol=1e-6)
            from_b = np.isclose(child, scale * b, rtol=1e-6)
            if (from_a | from_b).all():
                mixed += bool(from_a.any() and from_b.any() and not from_a.all())
                break
        else:
            pytest.fail(f"child {child} is not a uniform crossover of the parents")
    assert mixed >= 8  # nearly every child takes coefficients from both parents


def test_mutation_std_is_mutation_scale_over_k() -> None:
    k = 200
    init = np.full((1, k), 1.0 / k)
    config = EvolutionaryConfig(parents=1, select_prob=1.0, mutation_scale=1.5)
    children = drive(config.make_optimizer(init, seed=0), lambda i, c: float(i > 0), 101)[1:]
    # child = (u + n) / (1 + sum n) with u uniform, so child - 1/K = (n - mean n) / (1 + sum n)
    spreads = [np.std(child - 1.0 / k) for child in children]
    assert np.median(spreads) == pytest.approx(1.5 / k, rel=0.1)


def test_mutation_guard_avoids_dividing_by_a_small_sum() -> None:
    init = np.array([[0.5, 0.5], [0.9, 0.1]])
    config = EvolutionaryConfig(mutation_scale=20.0)  # sigma = 10: sums near 0 are common
    children = drive(config.make_optimizer(init, seed=0), lambda i, c: 0.0, 2000)[2:]
    children = np.array(children)
    assert np.allclose(children.sum(axis=1), 1.0, atol=1e-12)
    # every sum was >= 0.1 in magnitude, so no coefficient exceeds (1 + |noise|) / 0.1
    assert np.abs(children).max() < 10 * (1.0 + 10.0 * 6)


def test_mutation_falls_back_to_the_affine_projection() -> None:
    opt = EvolutionaryOptimizer(np.array([[0.5, 0.5]]), EvolutionaryConfig(), seed=0)

    class CancellingRng:  # every draw cancels the child's sum exactly
        def normal(self, loc, scale, size):
            return np.array([-0.5, -0.5])

    opt.rng = CancellingRng()
    out = opt._mutate(np.array([0.5, 0.5]))
    assert np.allclose(out, [0.5, 0.5])  # (0, 0) projected onto sum 1


# ---------------------------------------------------------------- CMA-ES


def test_cmaes_starts_at_the_best_init_with_sigma_scale_over_k(make_init) -> None:
    k = 20
    init = make_init(k, p=3)
    config = CMAESConfig(sigma_scale=2.0, popsize=200)
    opt = config.make_optimizer(init, seed=0)
    batch = np.array(drive(opt, lambda i, c: [5.0, 1.0, 9.0][i] if i < 3 else 0.0, 3 + 200)[3:])
    deviation = batch - init[1]  # row 1 scored best
    assert np.allclose(deviation.sum(axis=1), 0.0, atol=1e-12)
    assert np.abs(deviation.mean(axis=0)).max() < 4 * 2.0 / k / np.sqrt(200)
    # isotropic in the (K-1)-dim plane: per-coefficient variance sigma0^2 (K-1)/K
    expected = 2.0 / k * np.sqrt((k - 1) / k)
    assert np.std(deviation) == pytest.approx(expected, rel=0.05)


def test_finite_scores_replaces_non_finite_by_a_worse_value() -> None:
    out = finite_scores([1.0, math.nan, -3.0, math.inf, -math.inf])
    assert out[0] == 1.0 and out[2] == -3.0
    assert out[1] == out[3] == out[4] > 1.0
    assert finite_scores([math.nan, math.nan]) == [1e300, 1e300]


def test_cmaes_restarts_when_pycma_stops(make_init) -> None:
    opt = CMAESConfig().make_optimizer(make_init(5), seed=0)
    candidates = drive(opt, lambda i, c: 1.0, 400)  # flat: pycma stops on tolflatfitness
    assert opt.restarts >= 1
    assert np.allclose(np.sum(candidates, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("popsize", [None, 4])  # pycma mirrors samples below 6
def test_cmaes_leaves_the_global_numpy_rng_alone(popsize, make_init, make_quadratic) -> None:
    np.random.seed(1234)
    before = np.random.get_state()
    config = CMAESConfig(popsize=popsize)
    minimize(make_quadratic(10), make_init(10), config, budget=200, seed=0)
    after = np.random.get_state()
    assert before[2] == after[2] and np.array_equal(before[1], after[1])


# ---------------------------------------------------------------- random search


def test_random_search_perturbs_the_best_init(make_init) -> None:
    k = 40
    init = make_init(k, p=3)
    opt = RandomConfig(scale=1.5).make_optimizer(init, seed=0)
    samples = np.array(drive(opt, lambda i, c: [2.0, 3.0, 1.0][i] if i < 3 else 0.0, 503)[3:])
    deviation = samples - init[2]
    assert np.allclose(deviation.sum(axis=1), 0.0, atol=1e-12)
    assert np.std(deviation) == pytest.approx(1.5 / k * np.sqrt((k - 1) / k), rel=0.05)


# ---------------------------------------------------------------- all methods


@pytest.mark.parametrize(
    "config", [EvolutionaryConfig(parents=1), CMAESConfig(), RandomConfig()], ids=lambda c: c.method
)
def test_non_finite_scores_rank_last(config, make_init) -> None:
    """-inf and NaN must not win: the search follows the finite best row."""
    k = 10
    init = make_init(k, p=3)
    opt = config.make_optimizer(init, seed=0)
    init_scores = [-math.inf, 5.0, math.nan]
    asked = np.array(drive(opt, lambda i, c: init_scores[i] if i < 3 else 10.0, 3 + 40)[3:])
    centre = asked.mean(axis=0)
    assert np.argmin([np.linalg.norm(centre - row) for row in init]) == 1


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.method)
def test_nonnegative_gives_convex_candidates(config, make_init, make_quadratic) -> None:
    import dataclasses

    convex = dataclasses.replace(config, nonnegative=True)
    f = make_quadratic(20, shift=4.0)  # optimum has negative entries: clipping is exercised
    result = minimize(f, make_init(20), convex, budget=200, seed=0)
    coefficients = np.array([e.coefficients for e in result.history])
    assert (coefficients >= 0).all()
    assert np.allclose(coefficients.sum(axis=1), 1.0, atol=1e-12)
    unconstrained = minimize(f, make_init(20), config, budget=200, seed=0)
    assert (np.array([e.coefficients for e in unconstrained.history]) < 0).any()


@pytest.mark.parametrize("method", ["evolutionary", "cmaes", "random"])
def test_same_seed_same_history_other_seed_other_history(
    method, make_init, make_quadratic, assert_same_history
) -> None:
    f, init = make_quadratic(15), make_init(15)
    first = minimize(f, init, method, budget=60, seed=7).history
    assert_same_history(minimize(f, init, method, budget=60, seed=7).history, first)
    other = minimize(f, init, method, budget=60, seed=8).history
    assert not np.array_equal(other[-1].coefficients, first[-1].coefficients)


@pytest.mark.parametrize("noise", [0.0, 0.01])
@pytest.mark.parametrize("seed", [0, 1])
def test_searches_improve_a_shifted_quadratic(noise, seed, make_init) -> None:
    """K=50, budget 400: a real improvement over the best init, even with noisy scores."""
    k = 50
    init = make_init(k, p=4)
    rng = np.random.default_rng(100 + seed)
    target = init[1] + rng.normal(0.0, 4.0 / k, k)
    target += (1.0 - target.sum()) / k
    noise_rng = np.random.default_rng(seed)

    def true_loss(a: np.ndarray) -> float:
        return float(np.sum((a - target) ** 2))

    def noisy(a: np.ndarray) -> float:
        return true_loss(a) + noise * noise_rng.normal()

    baseline = min(true_loss(row) for row in init)
    final = {
        method: true_loss(minimize(noisy, init, method, budget=400, seed=seed).best_coefficients)
        for method in ("evolutionary", "cmaes", "random")
    }
    assert final["evolutionary"] < 0.85 * baseline
    assert final["evolutionary"] < final["random"]  # selection beats blind sampling
    assert final["cmaes"] < 0.4 * baseline


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (EvolutionaryConfig, "children_per_generation", 0),
        (EvolutionaryConfig, "parents", 2.5),
        (EvolutionaryConfig, "select_prob", 1.5),
        (EvolutionaryConfig, "mutation_scale", 0.0),
        (EvolutionaryConfig, "mutation_scale", math.nan),
        (EvolutionaryConfig, "nonnegative", "yes"),
        (CMAESConfig, "sigma_scale", -1.0),
        (CMAESConfig, "popsize", 1),
        (CMAESConfig, "popsize", True),
        (RandomConfig, "scale", math.inf),
    ],
)
def test_invalid_config_names_the_field(cls, field, value) -> None:
    with pytest.raises(SearchError, match=field):
        cls(**{field: value})


def test_configs_coerce_numbers_and_serialise() -> None:
    config = EvolutionaryConfig(mutation_scale=2, parents=np.int64(4))
    assert config == EvolutionaryConfig(mutation_scale=2.0, parents=4)
    assert config.to_dict()["mutation_scale"] == 2.0
    assert isinstance(config.to_dict()["parents"], int)

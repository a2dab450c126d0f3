"""Candidates asked ahead, and a search spread over 2 gloo processes (torchrun on 127.0.0.1):
the same history as one process, resumable, failures reported on every rank."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lcsc.search import CMAESConfig, EvolutionaryConfig, RandomConfig, minimize
from lcsc.search.distributed import local_launcher
from lcsc.search.subspace import SubspaceConfig

CONFIGS = [
    EvolutionaryConfig(children_per_generation=7),
    CMAESConfig(popsize=5),
    RandomConfig(),
    SubspaceConfig(dims=4, popsize=6),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.method)
@pytest.mark.parametrize("limit", [2, 3, 100])
def test_ask_many_proposes_what_ask_does(config, limit, make_init, make_quadratic) -> None:
    init, f = make_init(12), make_quadratic(12)
    one = config.make_optimizer(init, seed=5)
    expected = []
    for _ in range(80):
        c = one.ask()
        expected.append(c)
        one.tell(f(c))
    many = config.make_optimizer(init, seed=5)
    got: list[np.ndarray] = []
    while len(got) < 80:
        batch = many.ask_many(limit)
        assert 1 <= len(batch) <= limit
        for c in batch:
            got.append(c)
            many.tell(f(c))
    for i, (g, e) in enumerate(zip(got[:80], expected, strict=True)):
        assert np.array_equal(g, e), f"candidate {i} differs"


def test_ask_many_stops_at_generation_boundaries(make_init) -> None:
    opt = EvolutionaryConfig(children_per_generation=7).make_optimizer(make_init(6), seed=0)
    sizes = []
    for _ in range(4):
        batch = opt.ask_many(100)
        sizes.append(len(batch))
        for c in batch:
            opt.tell(float(c[0]))
    assert sizes == [3, 7, 7, 7]  # the 3 init rows, then whole generations
    opt.ask_many(2)
    with pytest.raises(RuntimeError):
        opt.ask_many(2)  # the previous candidates are not told yet


SCRIPT = """
import json, sys, time
import numpy as np
import torch.distributed as dist
from lcsc.search import minimize
from lcsc.search.distributed import process_group_from_env

group = process_group_from_env()
group.__enter__()
method, budget, out, work, fail = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
k = 10
target = np.linspace(-1.0, 2.0, k) / k + (1.0 - np.linspace(-1.0, 2.0, k).sum() / k) / k
init = np.stack([np.full(k, 1.0 / k), np.eye(k)[-1], np.eye(k)[0]])

def score(a):
    if fail == "yes" and np.array_equal(a, init[1]):
        raise ValueError("boom")
    time.sleep(0.002)
    return float(np.sum((a - target) ** 2))

r = minimize(score, init, method, budget=budget, seed=4, workdir=None if work == "-" else work)
with open(f"{out}.{dist.get_rank()}", "w") as f:
    json.dump({"coefficients": [e.coefficients.tolist() for e in r.history],
               "scores": [e.score for e in r.history], "best": r.best_index}, f)
group.__exit__(None, None, None)
"""


def _torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "search_script.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [*local_launcher(2), str(script), *args], capture_output=True, text=True, timeout=300
    )


def _one_process(method: str, budget: int) -> dict:
    k = 10
    grid = np.linspace(-1.0, 2.0, k)
    target = grid / k + (1.0 - grid.sum() / k) / k
    init = np.stack([np.full(k, 1.0 / k), np.eye(k)[-1], np.eye(k)[0]])
    r = minimize(lambda a: float(np.sum((a - target) ** 2)), init, method, budget=budget, seed=4)
    return {
        "coefficients": [e.coefficients.tolist() for e in r.history],
        "scores": [e.score for e in r.history],
        "best": r.best_index,
    }


@pytest.mark.parametrize("method", ["evolutionary", "cmaes"])
def test_two_processes_equal_one_and_resume(tmp_path: Path, method: str) -> None:
    work, out = tmp_path / "work", tmp_path / "result"
    first = _torchrun(tmp_path, method, "25", str(out), str(work), "no")
    assert first.returncode == 0, first.stderr
    assert len((work / "history.jsonl").read_text().splitlines()) == 25
    resumed = _torchrun(tmp_path, method, "50", str(out), str(work), "no")  # continues
    assert resumed.returncode == 0, resumed.stderr
    want = _one_process(method, 50)
    for rank in (0, 1):  # every rank returns rank 0's result
        got = json.loads(Path(f"{out}.{rank}").read_text())
        assert got == want
    lines = [json.loads(x) for x in (work / "history.jsonl").read_text().splitlines()]
    assert [x["coefficients"] for x in lines] == want["coefficients"]
    assert all(math.isfinite(x["score"]) for x in lines)


def test_a_failure_on_another_rank_stops_every_rank(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proc = _torchrun(tmp_path, "evolutionary", "20", str(tmp_path / "r"), str(work), "yes")
    assert proc.returncode != 0
    assert "objective failed on candidate 1" in proc.stderr and "ValueError: boom" in proc.stderr
    assert "the search failed on rank 0" in proc.stderr  # rank 1 was told, not left hanging
    assert json.loads((work / "failed_candidate.json").read_text())["index"] == 1
    assert len((work / "history.jsonl").read_text().splitlines()) == 1  # candidate 0 kept

"""The samples of one candidate split over 2 gloo processes (torchrun on 127.0.0.1): the FD of
the merged feature moments equals the one-process FD, a search with ``split="samples"`` equals
the one-process search, NaN and failures on one rank reach every rank."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc import search
from lcsc.checkpoint import read_checkpoint
from lcsc.errors import LcscError, SearchError
from lcsc.objectives import SampleFD
from lcsc.reference.digits import digits_fd
from lcsc.search.distributed import for_split, local_launcher, shard_rows
from lcsc.trajectory import Trajectory

# Shared by the script (under torchrun) and the test (one process).
COMMON = """
import numpy as np, torch
from lcsc.metrics import FeatureStats
from lcsc.objectives import SampleFD

class Rows:
    '''Samples noise + w[:3] of fixed rows; raises on row 900 when w[0] is exactly 7.'''
    def __init__(self, noise, start=0):
        self.noise, self.start = noise, start
    def __len__(self):
        return len(self.noise)
    def shard(self, a, b):
        return Rows(self.noise[a:b], self.start + a)
    def __call__(self, sd):
        if float(sd["w"][0]) == 7.0 and self.start <= 900 < self.start + len(self.noise):
            raise ValueError("boom")
        return self.noise + sd["w"][:3]

def toy(nan=False):
    noise = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    if nan:
        noise[900, 1] = float("nan")  # rank 1's share of 1000 rows
    ref = FeatureStats.from_features(torch.randn(500, 3, generator=torch.Generator().manual_seed(1)))
    return SampleFD(Rows(noise), torch.nn.Identity(), ref)
"""

SCRIPT = (
    COMMON
    + """
import json, sys
import torch.distributed as dist
from lcsc import search
from lcsc.checkpoint import read_checkpoint
from lcsc.reference.digits import digits_fd
from lcsc.search.distributed import process_group_from_env
from lcsc.trajectory import Trajectory

run, out, work = sys.argv[1:4]
with process_group_from_env():
    sd = {k: v.clone() for k, v in read_checkpoint(f"{run}/ema.safetensors").tensors.items()}
    got = {}
    for n, nfe in ((2000, 1), (1001, 1), (600, 2)):
        got[f"{n}/{nfe}"] = digits_fd(run, samples=str(n), nfe=str(nfe)).split_samples()(sd)
    w = {"w": torch.tensor([0.5, -1.0, 0.0])}
    got["toy"] = toy().split_samples()(w)
    got["toy_nan"] = toy(nan=True).split_samples()(w)
    try:
        toy().split_samples()({"w": torch.tensor([7.0, 0.0, 0.0])})
    except Exception as exc:
        got["failure"] = f"{type(exc).__name__}: {exc}"
    traj = Trajectory.open(f"{run}/trajectory").select(start=1)
    result = search.run(traj, digits_fd(run, samples="400"), "evolutionary", budget=16, seed=1,
                        workdir=work, split="samples")
    got["history"] = [[e.coefficients.tolist(), e.score] for e in result.history]
    with open(f"{out}.{dist.get_rank()}", "w") as f:
        json.dump(got, f)
"""
)

FAILING = (
    COMMON
    + """
import sys
import numpy as np
from lcsc.search import minimize
from lcsc.search.distributed import process_group_from_env

with process_group_from_env():
    objective = toy().split_samples()
    init = np.array([[0.5, 0.5, 0.0], [7.0, -3.0, -3.0], [0.0, 0.0, 1.0]])
    minimize(lambda a: objective({"w": torch.tensor(a)}), init, "evolutionary", budget=10,
             workdir=sys.argv[1], split="samples")
"""
)

namespace: dict = {}
exec(COMMON, namespace)  # the same toy objective in this process
toy = namespace["toy"]


def _torchrun(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*local_launcher(2), str(script), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_shard_rows_cover_every_row_once() -> None:
    for n in (0, 1, 5, 1001):
        for world in (1, 2, 3, 8):
            blocks = [shard_rows(n, r, world) for r in range(world)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
            assert max(b - a for a, b in blocks) - min(b - a for a, b in blocks) <= 1


def test_two_processes_equal_one(ct_run: Path, tmp_path: Path) -> None:
    script = tmp_path / "split_script.py"
    script.write_text(SCRIPT)
    out, work = tmp_path / "got", tmp_path / "work"
    proc = _torchrun(script, str(ct_run), str(out), str(work))
    assert proc.returncode == 0, proc.stderr
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)]
    # rank 1's share raised; rank 0 heard of it
    assert (
        ranks[0].pop("failure")
        == "PeerFailed: another process failed scoring its share of the samples"
    )
    assert ranks[1].pop("failure") == "ValueError: boom"
    assert all(math.isnan(r.pop("toy_nan")) for r in ranks)  # rank 1's NaN sample: NaN on all
    assert ranks[0] == ranks[1]  # every rank holds the same scores and result
    got = ranks[0]
    sd = {k: v.clone() for k, v in read_checkpoint(ct_run / "ema.safetensors").tensors.items()}
    # 2000 samples: each rank's 1000 rows are one batch of the one-process sampler (batch 1000),
    # so the samples are bitwise the same and only the float64 sums' order differs. 1001 and
    # 600 x nfe 2: other batch shapes, for which BLAS may round float32 samples and features
    # differently (measured on this machine: up to 5e-8 in a sample, 1.2e-7 in a feature);
    # a relative change of 1e-7 in a few rows moves the FD far less than 1e-6.
    for key, rel in (("2000/1", 1e-9), ("1001/1", 1e-6), ("600/2", 1e-6)):
        n, nfe = key.split("/")
        one = digits_fd(str(ct_run), samples=n, nfe=nfe)(sd)
        assert got[key] == pytest.approx(one, rel=rel), key
    assert got["toy"] == pytest.approx(toy()({"w": torch.tensor([0.5, -1.0, 0.0])}), rel=1e-12)
    traj = Trajectory.open(ct_run / "trajectory").select(start=1)
    one = search.run(traj, digits_fd(str(ct_run), samples="400"), "evolutionary", budget=16, seed=1)
    assert [c for c, _ in got["history"]] == [e.coefficients.tolist() for e in one.history]
    scores = np.array([s for _, s in got["history"]])
    np.testing.assert_allclose(scores, [e.score for e in one.history], rtol=1e-9)
    lines = (work / "history.jsonl").read_text().splitlines()
    assert [json.loads(x)["score"] for x in lines] == list(scores)  # rank 0 wrote the history
    # Its workdir resumes in one process: the 16 replay (same candidates), 8 more follow.
    fd = digits_fd(str(ct_run), samples="400")
    more = search.run(traj, fd, "evolutionary", budget=24, seed=1, workdir=work)
    longer = search.run(traj, fd, "evolutionary", budget=24, seed=1)
    assert [e.resumed for e in more.history] == [True] * 16 + [False] * 8
    assert [e.coefficients.tolist() for e in more.history] == [
        e.coefficients.tolist() for e in longer.history
    ]


def test_a_failing_share_stops_every_rank(tmp_path: Path) -> None:
    script, work = tmp_path / "failing.py", tmp_path / "work"
    script.write_text(FAILING)
    proc = _torchrun(script, str(work))
    assert proc.returncode != 0
    # rank 0's share was fine: the error it reports is rank 1's own
    assert "objective failed on candidate 1" in proc.stderr and "ValueError: boom" in proc.stderr
    assert "the search failed on rank 0" in proc.stderr  # rank 1 was told, not left hanging
    assert json.loads((work / "failed_candidate.json").read_text())["index"] == 1


def test_one_process_and_bad_split(ct_run: Path) -> None:
    """Outside a group the split objective is one share: the one-process FD exactly."""
    sd = {k: v.clone() for k, v in read_checkpoint(ct_run / "ema.safetensors").tensors.items()}
    objective = digits_fd(str(ct_run), samples="300")
    assert objective.split_samples()(sd) == pytest.approx(objective(sd), rel=1e-12)
    plain = SampleFD(lambda sd: sd["x"], torch.nn.Identity(), objective.reference)
    with pytest.raises(LcscError, match=r"the generator \(function\) must have __len__ and shard"):
        plain.split_samples()
    with pytest.raises(SearchError, match="split must be one of candidates, samples"):
        for_split(objective, "rows")
    with pytest.raises(SearchError, match="has none: use split='candidates'"):
        for_split(lambda sd: 0.0, "samples")
    with pytest.raises(SearchError, match="split must be"):
        search.minimize(lambda a: 0.0, np.eye(2), budget=2, split="rows")


def test_torchrun_search_command_with_split_samples(ct_run: Path, tmp_path: Path) -> None:
    """``torchrun ... -m lcsc search --split samples``: rank 0 writes what one process does."""
    common = ["-m", "lcsc", "search", str(ct_run / "trajectory"), "--method", "evolutionary"]
    common += ["--objective", "lcsc.reference.digits:digits_fd", "--objective-arg"]
    common += [f"run={ct_run}", "--objective-arg", "samples=300", "--budget", "12"]
    options = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    one = subprocess.run([sys.executable, *common, "--workdir", "one"], **options)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*local_launcher(2), *common, "--workdir", "two", "--split", "samples"], **options
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("best score") == 1  # rank 0 alone reports and writes

    def records(name: str) -> tuple[list, list]:
        lines = [
            json.loads(x) for x in (tmp_path / name / "history.jsonl").read_text().splitlines()
        ]
        return [r["coefficients"] for r in lines], [r["score"] for r in lines]

    (c1, s1), (c2, s2) = records("one"), records("two")
    assert c2 == c1 and len(c1) == 12
    np.testing.assert_allclose(s2, s1, rtol=1e-9)

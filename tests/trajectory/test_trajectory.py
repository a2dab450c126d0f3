from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import write_checkpoint
from lcsc.errors import CheckpointError, LcscError, TrajectoryError
from lcsc.trajectory import Trajectory
from lcsc.trajectory.trajectory import all_finite


def _reference_sum(states: list[dict[str, torch.Tensor]], a: np.ndarray) -> dict[str, torch.Tensor]:
    """sum_i a_i theta_i in float64, written independently of lcsc."""
    return {
        k: sum(float(c) * s[k].double() for c, s in zip(a, states, strict=True))
        for k in states[0]
        if states[0][k].is_floating_point()
    }


def _states(k: int = 5, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    base = {"w": torch.randn(7, 3, generator=g), "b": torch.randn(3, generator=g)}
    return [
        {
            "w": base["w"] + 0.1 * i * torch.randn(7, 3, generator=g),
            "b": base["b"] + 0.1 * torch.randn(3, generator=g),
            "count": torch.tensor(i),
        }
        for i in range(k)
    ]


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_combine_matches_weighted_sum(tmp_path: Path, fmt: str) -> None:
    states = _states()
    paths = []
    for i, s in enumerate(states):
        p = tmp_path / f"ckpt_{(i + 1) * 100}.{fmt}"
        write_checkpoint(p, s) if fmt == "safetensors" else torch.save(s, p)
        paths.append(p)
    traj = Trajectory.from_files(reversed(paths))  # sorted by the numbers in the names
    assert traj.steps == [100, 200, 300, 400, 500]
    a = np.array([0.5, -0.7, 1.2, 0.3, -0.3])
    got = traj.combine(a)
    want = _reference_sum(states, a)
    for k, v in want.items():
        assert got[k].dtype == torch.float32
        torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-6)
    assert int(got["count"]) == 4  # integer buffers from the last checkpoint
    assert list(got) == traj.keys


def test_recorded_trajectory(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    assert traj.steps == list(range(5, 61, 5))
    assert traj.metadata == {"seed": 0}
    assert traj.num_parameters == sum(t.numel() for t in traj.load(0).values())
    assert traj.nbytes == sum(p.stat().st_size for p in traj.paths)
    a = np.full(len(traj), 1 / len(traj))
    want = _reference_sum([traj.load(i) for i in range(len(traj))], a)
    got = traj.combine(a)
    for k, v in want.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-6, atol=1e-7)


def test_float64_accumulation_is_more_precise(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    states = [{"w": 1000 + torch.randn(4096, generator=g)} for _ in range(50)]
    for i, s in enumerate(states):
        write_checkpoint(tmp_path / f"s{i}.safetensors", s)
    traj = Trajectory.from_files(sorted(tmp_path.iterdir()), steps=range(50))
    a = np.random.default_rng(0).normal(size=50)
    a /= a.sum()
    want = _reference_sum(states, a)["w"]
    err32 = (traj.combine(a)["w"].double() - want).abs().max()
    err64 = (traj.combine(a, accumulate=torch.float64)["w"].double() - want).abs().max()
    assert traj.combine(a, accumulate=torch.float64)["w"].dtype == torch.float32
    assert err64 < err32


def test_half_precision_model_keeps_dtype(tmp_path: Path) -> None:
    states = [{"w": torch.full((3,), float(i)).bfloat16()} for i in range(3)]
    for i, s in enumerate(states):
        write_checkpoint(tmp_path / f"c{i}.safetensors", s)
    traj = Trajectory.from_files(sorted(tmp_path.iterdir()))
    out = traj.combine([0.25, 0.25, 0.5])["w"]
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, torch.full((3,), 1.25).bfloat16())


def test_select_window_and_interval(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    assert traj.select(start=20, stop=40).steps == [20, 25, 30, 35, 40]
    sub = traj.select(every=4)
    assert sub.steps == [20, 40, 60]  # counted back from the last checkpoint
    torch.testing.assert_close(sub.load(1)["0.weight"], traj.load(7)["0.weight"])
    with pytest.raises(TrajectoryError, match="no checkpoint between steps 1000"):
        traj.select(start=1000)
    with pytest.raises(TrajectoryError, match="every"):
        traj.select(every=0)


def test_coefficient_count_is_checked(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    with pytest.raises(LcscError, match="expected 12 coefficients"):
        traj.combine([1.0])
    with pytest.raises(LcscError, match="finite"):
        traj.combine([float("nan")] * 12)


def _write_pair(tmp_path: Path, second: dict[str, torch.Tensor]) -> list[Path]:
    paths = [tmp_path / "a_1.safetensors", tmp_path / "a_2.safetensors"]
    write_checkpoint(paths[0], {"w": torch.zeros(2, 3), "b": torch.zeros(3)})
    write_checkpoint(paths[1], second)
    return paths


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_all_finite_agrees_with_the_exact_check(dtype: torch.dtype) -> None:
    big = torch.finfo(dtype).max
    cases = [
        torch.zeros(0, dtype=dtype),
        torch.randn(1000, dtype=dtype),
        torch.full((64,), big, dtype=dtype),  # finite values whose sum overflows
        torch.tensor([big, -big, big, big], dtype=dtype),
        torch.tensor([1.0, float("nan")], dtype=dtype),
        torch.tensor([float("inf"), float("-inf")], dtype=dtype),  # the sum is NaN
        torch.tensor([float("inf"), 1.0], dtype=dtype),
        torch.tensor([big, float("-inf")], dtype=dtype),
        torch.tensor([-1.0, float("nan"), 2.0] + [0.0] * 5000, dtype=dtype),
        torch.cat([torch.zeros(4097, dtype=dtype), torch.tensor([float("nan")], dtype=dtype)]),
    ]
    for t in cases:
        assert all_finite(t) == bool(torch.isfinite(t).all()), t


def test_open_accepts_finite_values_whose_sum_overflows(tmp_path: Path) -> None:
    big = torch.finfo(torch.float32).max
    traj = Trajectory.from_files(
        _write_pair(tmp_path, {"w": torch.full((2, 3), big), "b": torch.full((3,), big)})
    )
    assert len(traj) == 2


@pytest.mark.parametrize(
    ("second", "pattern"),
    [
        ({"w": torch.zeros(2, 3)}, r"a_2\.safetensors: key 'b' missing"),
        (
            {"w": torch.zeros(2, 3), "b": torch.zeros(3), "x": torch.zeros(1)},
            r"a_2.*unexpected key 'x'",
        ),
        ({"w": torch.zeros(3, 2), "b": torch.zeros(3)}, r"a_2.*key 'w' has shape \(3, 2\)"),
        (
            {"w": torch.zeros(2, 3).double(), "b": torch.zeros(3)},
            r"a_2.*key 'w' has dtype torch.float64",
        ),
        (
            {"w": torch.zeros(2, 3), "b": torch.tensor([0.0, float("nan"), 1.0])},
            r"a_2.*key 'b'.*NaN/Inf",
        ),
        ({"w": torch.full((2, 3), float("inf")), "b": torch.zeros(3)}, r"a_2.*key 'w'.*6 NaN/Inf"),
    ],
)
def test_bad_trajectories_name_file_and_key(tmp_path: Path, second, pattern: str) -> None:
    with pytest.raises(TrajectoryError, match=pattern):
        Trajectory.from_files(_write_pair(tmp_path, second))


def test_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajectoryError, match="empty folder"):
        Trajectory.open(tmp_path / "empty")
    with pytest.raises(TrajectoryError, match="no such directory"):
        Trajectory.open(tmp_path / "nope")
    paths = _write_pair(tmp_path, {"w": torch.ones(2, 3), "b": torch.ones(3)})
    with pytest.raises(TrajectoryError, match="same step 1"):
        Trajectory.from_files(paths, steps=[1, 1])
    nameless = tmp_path / "final.safetensors"
    write_checkpoint(nameless, {"w": torch.ones(2, 3), "b": torch.ones(3)})
    with pytest.raises(TrajectoryError, match=r"final\.safetensors: no step number"):
        Trajectory.from_files([nameless, *paths])
    paths[1].write_bytes(paths[1].read_bytes()[:-4])
    with pytest.raises(CheckpointError, match=r"a_2\.safetensors.*truncated"):
        Trajectory.from_files(paths)


def test_open_plain_folder_of_pt_files(tmp_path: Path) -> None:
    states = _states(3)
    for i, s in enumerate(states):
        torch.save(s, tmp_path / f"model_{i * 10:06d}.pt")
    traj = Trajectory.from_paths([tmp_path])
    assert traj.steps == [0, 10, 20]
    torch.testing.assert_close(traj.load(2)["w"], states[2]["w"])


def test_fingerprint_tracks_selection(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    assert traj.fingerprint() == Trajectory.open(recorded).fingerprint()
    assert traj.fingerprint() != traj.select(every=2).fingerprint()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_combine_on_cuda(recorded: Path) -> None:
    traj = Trajectory.open(recorded)
    a = np.linspace(-1, 2, len(traj))
    a /= a.sum()
    cpu = traj.combine(a)
    gpu = traj.combine(a, device="cuda")
    for k in cpu:
        assert gpu[k].device.type == "cuda"
        torch.testing.assert_close(gpu[k].cpu(), cpu[k])


def test_output_lcsc_could_not_read_back_is_refused(recorded: Path, tmp_path: Path) -> None:
    """Without a diffusers component, an output must be a .safetensors file name."""
    traj = Trajectory.open(recorded)
    a = np.full(len(traj), 1.0 / len(traj))
    for name in ("merged", "merged.pt"):
        with pytest.raises(TrajectoryError, match=f"{name}: expected a .safetensors file name"):
            traj.save_combination(tmp_path / name, a)
        assert not (tmp_path / name).exists()
    assert traj.save_combination(tmp_path / "merged.safetensors", a).is_file()

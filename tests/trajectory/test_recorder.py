from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import CheckpointError, LcscError
from lcsc.trajectory import Recorder, Trajectory
from tests.conftest import tiny_model, train


def test_records_every_and_keeps_window(tmp_path: Path) -> None:
    model = train(tmp_path / "run", steps=60, every=5, keep=4)
    traj = Trajectory.open(tmp_path / "run")
    assert traj.steps == [45, 50, 55, 60]
    for key, value in model.state_dict().items():
        assert torch.equal(traj.load(3)[key], value)
    manifest = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert manifest["metadata"] == {"seed": 0} and manifest["every"] == 5
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".tmp")]


def test_snapshot_is_a_copy(tmp_path: Path) -> None:
    w = torch.zeros(3)
    with Recorder(tmp_path, every=1) as rec:
        assert rec.update({"w": w}, 1)
        w += 1  # training goes on while the writer works
    assert torch.equal(Trajectory.open(tmp_path).load(0)["w"], torch.zeros(3))


def test_update_skips_off_steps_and_accepts_state_dicts(tmp_path: Path) -> None:
    with Recorder(tmp_path, every=10) as rec:
        assert not rec.update({"w": torch.ones(2)}, 5)
        assert rec.update({"w": torch.ones(2)}, 10)
    assert Trajectory.open(tmp_path).steps == [10]


def test_restart_continues_and_rewinds(tmp_path: Path) -> None:
    def record(steps: range, value: float) -> None:
        with Recorder(tmp_path, every=1) as rec:
            for s in steps:
                rec.update({"w": torch.full((2,), value + s)}, s)

    record(range(1, 6), 0.0)
    record(range(6, 9), 0.0)  # a restarted run continues the trajectory
    assert Trajectory.open(tmp_path).steps == list(range(1, 9))
    record(range(4, 6), 100.0)  # resumed from an older training checkpoint: 4.. are replaced
    traj = Trajectory.open(tmp_path)
    assert traj.steps == [1, 2, 3, 4, 5]
    assert float(traj.load(3)["w"][0]) == 104.0


def test_writer_error_reaches_training_thread(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, every=1)
    rec.update({"w": torch.ones(2, dtype=torch.complex64)}, 1)
    with pytest.raises(CheckpointError, match="complex64"):
        rec.flush()
    rec.close()
    with pytest.raises(LcscError, match="after close"):
        rec.update({"w": torch.ones(2)}, 2)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(LcscError, match="every"):
        Recorder(tmp_path, every=0)
    with pytest.raises(LcscError, match="keep"):
        Recorder(tmp_path, keep=0)
    with pytest.raises(LcscError, match="JSON"):
        Recorder(tmp_path, metadata={"f": object()})


@pytest.mark.parametrize("compact", [False, True])
def test_kill_9_never_leaves_a_partial_checkpoint(tmp_path: Path, compact: bool) -> None:
    script = tmp_path / "record.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import torch
            from lcsc.trajectory import Recorder
            rec = Recorder({str(tmp_path / "run")!r}, every=1, keep=5, compact={compact})
            step = 0
            while True:
                step += 1
                rec.update({{"w": torch.full((200_000,), 0.001 * step), "n": torch.tensor(step)}}, step)
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], cwd=Path(__file__).parents[2], env=env)
    deadline = time.time() + 60
    while len(list((tmp_path / "run").glob("step-*"))) < 8 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    Recorder(tmp_path / "run", every=1, keep=5).close()  # removes a killed writer's temporary
    assert not list((tmp_path / "run").glob(".tmp-*"))
    traj = Trajectory.open(tmp_path / "run")
    assert 1 <= len(traj) <= 6
    for i, step in enumerate(traj.steps):
        sd = traj.load(i)
        assert int(sd["n"]) == step
        torch.testing.assert_close(sd["w"], torch.full((200_000,), 0.001 * step), rtol=1e-6, atol=0)


# A writer of lcsc.atomic stopped inside its write: killed (kill -9) or waiting on stdin.
_WRITER = """
import os, signal, sys
from lcsc.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"partial")
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print("writing", flush=True)
    sys.stdin.readline()
    tmp.write_bytes(b"done")
"""


def test_recorder_removes_temporaries_of_crashed_writers_only(tmp_path: Path) -> None:
    """Issue 12 case 19: orphaned ``.tmp-step-*`` files used to pile up after each kill -9."""
    run = tmp_path / "run"
    with Recorder(run, every=1) as rec:
        rec.update({"w": torch.ones(3)}, 1)
    for step in (2, 3, 4):
        killed = subprocess.run(
            [sys.executable, "-c", _WRITER, str(run / f"step-{step:010d}.safetensors"), "kill"]
        )
        assert killed.returncode == -signal.SIGKILL
    live_target = run / "step-0000000099.safetensors"
    live = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(live_target), "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None and live.stdout.readline() == "writing\n"
        assert len(list(run.glob(".tmp-step-*"))) == 4
        Recorder(run, every=1).close()
        left = list(run.glob(".tmp-step-*"))
        assert [p.name.startswith(".tmp-step-0000000099.") for p in left] == [True]
    finally:
        live.communicate("go\n", timeout=30)
    assert live.returncode == 0 and live_target.read_bytes() == b"done"
    assert not list(run.glob(".tmp-*"))


def test_disk_full_reaches_the_training_thread(tmp_path: Path, tmpfs) -> None:
    folder = tmpfs(256 << 10)
    rec = Recorder(folder / "run", every=1)
    rec.update({"w": torch.ones(8)}, 1)
    rec.flush()
    tmpfs.fill(folder)
    rec.update({"w": torch.ones(8)}, 2)
    with pytest.raises(CheckpointError, match=r"step 2 .*run.*No space left on device"):
        rec.flush()
    rec.close()
    assert Trajectory.open(folder / "run").steps == [1]
    assert not list((folder / "run").glob(".tmp-*"))


def test_compact_halves_disk_and_keeps_precision(tmp_path: Path) -> None:
    train(tmp_path / "full", steps=400, every=2, lr=1e-3, width=256)
    train(tmp_path / "compact", steps=400, every=2, lr=1e-3, width=256, compact=True)
    full, compact = Trajectory.open(tmp_path / "full"), Trajectory.open(tmp_path / "compact")
    assert full.steps == compact.steps and len(full) == 200
    assert compact.nbytes < 0.56 * full.nbytes  # float16 deltas plus small headers
    rng = np.random.default_rng(0)
    # Uniform, and a perturbation of the size the search makes (1.5/K per coefficient).
    for a in (np.full(200, 1 / 200), rng.normal(size=200) * 1.5 / 200 + 1 / 200):
        ref, got = full.combine(a), compact.combine(a)
        floats = [k for k in ref if ref[k].is_floating_point()]
        num = sum(float((got[k] - ref[k]).double().pow(2).sum()) for k in floats) ** 0.5
        den = sum(float(ref[k].double().pow(2).sum()) for k in floats) ** 0.5
        assert num / den < 1e-6
        assert all(torch.equal(got[k], ref[k]) for k in ref if k not in floats)


def test_compact_error_is_bounded_by_the_step_size(tmp_path: Path) -> None:
    """Closed-loop deltas: each checkpoint is off by at most float16 rounding of one interval's
    change (2**-11 of its largest entry), however long the chain."""
    train(tmp_path / "c", steps=100, every=5, compact=True, lr=1e-3)
    train(tmp_path / "f", steps=100, every=5, lr=1e-3)
    c, f = Trajectory.open(tmp_path / "c"), Trajectory.open(tmp_path / "f")
    for i in range(1, len(c)):
        for k, v in f.load(i).items():
            if v.is_floating_point():
                change = float((v - f.load(i - 1)[k]).abs().max())
                err = float((c.load(i)[k] - v).abs().max())
                assert err <= 2**-11 * change * 1.01 + 1e-7 * float(v.abs().max()), (k, i)


def test_compact_window_folds_into_full_files(tmp_path: Path) -> None:
    train(tmp_path / "window", steps=100, every=5, keep=6, compact=True, lr=1e-3)
    train(tmp_path / "all", steps=100, every=5, compact=True, lr=1e-3)
    window, whole = Trajectory.open(tmp_path / "window"), Trajectory.open(tmp_path / "all")
    assert window.steps == [75, 80, 85, 90, 95, 100]
    assert len(list((tmp_path / "window").glob("step-*"))) == 6
    recent = whole.select(start=75)
    for i in range(len(window)):
        for k, v in recent.load(i).items():
            torch.testing.assert_close(window.load(i)[k], v, rtol=1e-6, atol=1e-7)
    # A window of the compact trajectory that starts mid-chain still decodes.
    torch.testing.assert_close(whole.select(start=90).load(0)["3.bias"], recent.load(3)["3.bias"])


def test_compact_restart_starts_new_chain(tmp_path: Path) -> None:
    for steps in (range(1, 4), range(4, 7)):
        with Recorder(tmp_path, every=1, compact=True) as rec:
            for s in steps:
                rec.update({"w": torch.full((3,), 1.0 + 0.01 * s)}, s)
    traj = Trajectory.open(tmp_path)
    for i, s in enumerate(traj.steps):
        torch.testing.assert_close(traj.load(i)["w"], torch.full((3,), 1.0 + 0.01 * s))


def test_tiny_model_fixture_is_deterministic() -> None:
    assert torch.equal(tiny_model(3)[0].weight, tiny_model(3)[0].weight)


def test_compact_ddp_prefixed_weights_open_without_the_prefix(tmp_path: Path) -> None:
    # A Recorder fed a DDP model's state dict (every key "module."): the window rewrites files as
    # stored, and the opened trajectory decodes its deltas under the unprefixed names.
    g = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(5, 3, generator=g), "n": torch.tensor(i)} for i in range(6)]
    for name, prefix in (("bare", ""), ("ddp", "module.")):
        with Recorder(tmp_path / name, every=1, keep=4, compact=True) as rec:
            for step, sd in enumerate(states, start=1):
                rec.update({prefix + k: v for k, v in sd.items()}, step)
    stored = read_checkpoint(next((tmp_path / "ddp").glob("step-*")), strip_wrappers=False)
    assert set(stored.tensors) == {"module.w", "module.n"}
    bare, ddp = Trajectory.open(tmp_path / "bare"), Trajectory.open(tmp_path / "ddp")
    assert ddp.extraction.stripped == ("module.",) and ddp.steps == bare.steps == [3, 4, 5, 6]
    a = [0.1, 0.2, 0.3, 0.4]
    assert all(torch.equal(v, bare.combine(a)[k]) for k, v in ddp.combine(a).items())
    change = float((states[5]["w"] - states[4]["w"]).abs().max())  # float16 rounding of it
    torch.testing.assert_close(ddp.load(3)["w"], states[5]["w"], rtol=0, atol=2**-10 * change)

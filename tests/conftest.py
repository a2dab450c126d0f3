"""Shared fixtures: tiny models and the trajectories their training leaves behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lcsc.trajectory import Recorder

# One intra-op thread: test processes share 2 cores with each other and with subprocesses, and
# oversubscribed OpenMP threads slow torch down by an order of magnitude.
torch.set_num_threads(1)


def tiny_model(seed: int = 0, width: int = 16) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, width),
        torch.nn.BatchNorm1d(width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 2),
    )


def train(
    directory: Path,
    steps: int = 60,
    every: int = 5,
    keep: int | None = None,
    compact: bool = False,
    seed: int = 0,
    lr: float = 1e-2,
    width: int = 16,
) -> torch.nn.Module:
    """Train ``tiny_model`` with Adam on a fixed regression task, recording its trajectory."""
    model = tiny_model(seed, width)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 6, generator=g)
    y = torch.stack([x[:, 0] * x[:, 1], x[:, 2].sin()], 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with Recorder(
        directory, every=every, keep=keep, metadata={"seed": seed}, compact=compact
    ) as rec:
        for step in range(1, steps + 1):
            idx = torch.randint(0, 256, (32,), generator=g)
            loss = (model(x[idx]) - y[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.update(model, step)
    return model


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A Recorder directory with 12 checkpoints of a tiny model (steps 5..60)."""
    train(tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Factory: ``tmpfs(size)`` mounts a fresh tmpfs of ``size`` bytes and returns its folder;
    ``tmpfs.read_only(folder)`` remounts it read-only. Skips where mounting is not permitted
    (not root, no mount namespace): disk-full and read-only faults need a real filesystem,
    since root ignores permission bits."""
    mounted: list[Path] = []

    def mount(*args: str) -> None:
        proc = subprocess.run(["mount", *args], capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")

    def make(size: int) -> Path:
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
        mounted.append(folder)
        return folder

    make.read_only = lambda folder: mount("-o", "remount,ro", str(folder))  # type: ignore[attr-defined]
    make.fill = fill  # type: ignore[attr-defined]
    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Fill the filesystem of ``folder`` to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 1):  # large writes, then whatever is left
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def child_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a child Python that imports modules from ``folder`` and this
    checkout's lcsc (this process's ``sys.path``), not another installed copy."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path]), **extra}


def kill_when_logged(
    proc: subprocess.Popen[bytes], history: Path, lines: int, deadline_s: float = 120.0
) -> int:
    """Kill ``proc`` (SIGKILL, as ``kill -9``) once the search history file ``history`` holds
    ``lines`` lines; returns the number of lines it holds after the kill."""
    deadline = time.monotonic() + deadline_s
    while not (history.exists() and history.read_bytes().count(b"\n") >= lines):
        assert proc.poll() is None and time.monotonic() < deadline, "search ended too early"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return history.read_bytes().count(b"\n")


@pytest.fixture(scope="session")
def diffusers_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``checkpoint-{5,10,15,20}/{unet,unet_ema}/`` of a tiny UNet, as diffusers' examples
    save them, plus the same run recorded by lcsc in ``../recorded/``."""
    pytest.importorskip("diffusers")
    pytest.importorskip("accelerate")
    from tests.integrations.diffusers_run import train as train_unet

    return train_unet(tmp_path_factory.mktemp("diffusers") / "out")


@pytest.fixture(scope="session")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny consistency-training run on digits: 40 iterations, a checkpoint every 5 (read it,
    never write into it: the session shares it)."""
    from lcsc.reference.generative.networks import ModelConfig
    from lcsc.reference.generative.training import TrainConfig
    from lcsc.reference.generative.training import train as train_run

    out = tmp_path_factory.mktemp("ct") / "run"
    model = ModelConfig(kind="mlp", data_shape=(1, 8, 8), width=32, parametrisation="cm")
    train_run(
        TrainConfig(kind="ct", model=model, iterations=40, record_every=5, batch_size=32), out
    )
    return out

"""A Lightning run recorded by lcsc's callback, and the same run's own epoch=E-step=S.ckpt files."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from lcsc.trajectory import Trajectory, sources

try:  # the Trainer must come from the package whose Callback lcsc's callback subclasses
    import lightning.pytorch as pl
except ImportError:
    pl = pytest.importorskip("pytorch_lightning")
from lcsc.integrations.lightning import RecorderCallback  # noqa: E402


class Config:
    """A hyper-parameter object, pickled into the checkpoints (weights_only refuses it)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


class Regressor(pl.LightningModule):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.Adam(self.parameters(), lr=self.hparams.cfg.lr)


def test_callback_records_what_lightning_saves(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8
    )
    module = Regressor(Config(lr=1e-2))
    ckpts = tmp_path / "checkpoints"
    trainer = pl.Trainer(
        max_steps=12,
        accumulate_grad_batches=2,  # two batches end at each optimizer step
        callbacks=[
            RecorderCallback(tmp_path / "trajectory", every=3, module="model"),
            pl.callbacks.ModelCheckpoint(
                dirpath=ckpts, every_n_train_steps=3, save_top_k=-1, save_last=True
            ),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, data)
    recorded = Trajectory.open(tmp_path / "trajectory")
    assert recorded.steps == [3, 6, 9, 12]
    final = module.model.state_dict()
    assert all(torch.equal(recorded.load(3)[k], v) for k, v in final.items())
    # Lightning's own files: layout recognised, last.ckpt ignored, the Config object unbuilt.
    source = sources.find_source([ckpts])
    assert source.layout == sources.LIGHTNING and [p.name for p in source.ignored] == ["last.ckpt"]
    saved = Trajectory.from_paths([ckpts], strip_prefix="model.")
    assert saved.steps == recorded.steps
    assert f"{__name__}.Config" in saved.extraction.placeholders
    for i in range(4):
        assert all(torch.equal(saved.load(i)[k], v) for k, v in recorded.load(i).items())


def test_omegaconf_hyper_parameters_are_read_without_running_them(tmp_path: Path) -> None:
    """A LightningModule configured by an OmegaConf DictConfig (as Hydra runs are): its
    checkpoints pickle the config, which weights_only refuses; lcsc reads them unbuilt."""
    omegaconf = pytest.importorskip("omegaconf")
    from lcsc.cli import main
    from lcsc.ema import ema_coefficients

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8
    )
    module = Regressor(omegaconf.OmegaConf.create({"lr": 1e-2, "model": {"width": 8}}))
    ckpts = tmp_path / "checkpoints"
    trainer = pl.Trainer(
        max_steps=8,
        callbacks=[
            pl.callbacks.ModelCheckpoint(dirpath=ckpts, every_n_train_steps=2, save_top_k=-1)
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, data)
    files = sorted(ckpts.glob("*.ckpt"), key=lambda p: sources.step_from_path(p) or 0)
    with pytest.raises(Exception, match="Unsupported global|weights_only"):
        torch.load(files[0], weights_only=True)
    out = tmp_path / "ema.safetensors"
    assert (
        main(["merge", str(ckpts), "--strip-prefix", "model.", "--ema", "0.9", "-o", str(out)]) == 0
    )
    merged = safetensors.torch.load_file(out)
    # The reference: the same files fully unpickled (trusted here, written by this test).
    states = [torch.load(p, weights_only=False)["state_dict"] for p in files]
    steps = [2, 4, 6, 8]
    a = ema_coefficients(steps, 0.9)
    for key, value in merged.items():
        want = sum(c * s[f"model.{key}"].double() for c, s in zip(a, states, strict=True))
        torch.testing.assert_close(value.double(), want, rtol=1e-6, atol=1e-6)
    torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
    ).load_state_dict(merged, strict=True)

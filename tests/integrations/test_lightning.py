"""A Lightning run recorded by lcsc's callback, and the same run's own epoch=E-step=S.ckpt files."""

from __future__ import annotations

from pathlib import Path

import pytest
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

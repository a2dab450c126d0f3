"""Record a Lightning run's trajectory: a callback around :class:`lcsc.trajectory.Recorder`.

::

    from lcsc.integrations.lightning import RecorderCallback

    trainer = Trainer(callbacks=[RecorderCallback("runs/x/trajectory", every=20, module="model")])

The callback subclasses the ``Callback`` of ``lightning.pytorch`` when that package is
installed, else that of ``pytorch_lightning``; a Trainer accepts only callbacks of its own
package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError:
    from pytorch_lightning import Callback

from lcsc.trajectory import Recorder


class RecorderCallback(Callback):  # type: ignore[misc]
    """Record the weights after every ``every``-th optimizer step (``trainer.global_step``).

    Args:
        directory, every, keep, metadata, compact: as for :class:`~lcsc.trajectory.Recorder`.
        module: attribute of the LightningModule to record (``"model"`` records
            ``pl_module.model``, whose keys then lack the ``model.`` prefix); None records the
            whole LightningModule.

    Only the global-rank-0 process records. A run resumed from a Lightning checkpoint continues
    the trajectory in the same directory (see :class:`~lcsc.trajectory.Recorder`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        every: int = 20,
        keep: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        compact: bool = False,
        module: str | None = None,
    ) -> None:
        super().__init__()
        self.directory, self.every, self.keep = directory, every, keep
        self.metadata, self.compact, self.module = metadata, compact, module
        self.recorder: Recorder | None = None
        self._last_step: int | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = int(trainer.global_step)  # record only after optimizer steps
        if trainer.is_global_zero and self.recorder is None:
            self.recorder = Recorder(
                self.directory, self.every, self.keep, self.metadata, compact=self.compact
            )

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        step = int(trainer.global_step)
        # With gradient accumulation several batches end at one optimizer step: record once.
        if self.recorder is None or step == self._last_step:
            return
        self._last_step = step
        target = pl_module if self.module is None else getattr(pl_module, self.module)
        self.recorder.update(target, step)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            recorder.close()  # every recorded checkpoint is on disk when fit() returns

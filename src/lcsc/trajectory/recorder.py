"""Record dense checkpoints from any PyTorch training loop, without blocking it.

``update()`` copies the weights (the only work on the training thread) and hands the copy to a
background writer, which saves it atomically, applies the ``keep`` window and, in compact mode,
encodes it as a half-precision difference (see :mod:`lcsc.trajectory.compact`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lcsc.atomic import remove_stale
from lcsc.checkpoint import read_checkpoint, write_checkpoint
from lcsc.errors import CheckpointError, LcscError, WriteError
from lcsc.trajectory import layout
from lcsc.trajectory.compact import decode_delta, encode_delta

log = logging.getLogger(__name__)
_STOP = object()


class Recorder:
    """Keep a copy of the weights every ``every`` steps in ``directory``.

    Args:
        directory: where the trajectory lives; a restarted run that records into the same
            directory continues the same trajectory (a step at or before the last recorded one
            discards the recorded checkpoints from that step on: they belong to the abandoned run).
        every: record when ``step % every == 0``.
        keep: keep only the last ``keep`` checkpoints (the search window); None keeps all.
        metadata: JSON-serialisable facts stored with the trajectory (e.g. the model config).
        compact: store checkpoints as float16 differences (about half the disk).
        max_pending: copies waiting for the writer before ``update`` blocks (bounds memory).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        every: int = 20,
        keep: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        compact: bool = False,
        max_pending: int = 2,
    ) -> None:
        if every < 1:
            raise LcscError(f"Recorder: every must be >= 1, got {every}")
        if keep is not None and keep < 1:
            raise LcscError(f"Recorder: keep must be >= 1 or None, got {keep}")
        self.directory = Path(directory)
        self.every, self.keep, self.compact = every, keep, compact
        self.metadata = dict(metadata or {})
        try:
            self._metadata_json = json.dumps(self.metadata, sort_keys=True)
        except TypeError as exc:
            raise LcscError(f"Recorder: metadata is not JSON-serialisable: {exc}") from exc
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"Recorder: cannot create {self.directory}: {exc}") from exc
        layout.read_manifest(self.directory)  # refuse a foreign or newer manifest early
        removed = remove_stale(self.directory, ("step-", layout.MANIFEST))
        if removed:
            log.info("Recorder: removed %d temporary files of crashed writers", removed)
        layout.write_manifest(
            self.directory,
            metadata=self.metadata,
            every=every,
            keep=keep,
            storage="compact" if compact else "full",
        )
        self._files = sorted(
            (layout.step_from_name(p) or 0, p) for p in layout.recorded_files(self.directory)
        )
        self.last_step: int | None = self._files[-1][0] if self._files else None
        # Compact chains restart after a restart: the writer's reconstruction is not on disk.
        self._recon: dict[str, torch.Tensor] | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="lcsc-recorder", daemon=True)
        self._thread.start()
        self._closed = False

    # ----------------------------------------------------------------- training thread
    def update(
        self, model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor], step: int
    ) -> bool:
        """Record the weights if ``step`` is a multiple of ``every``; return whether it did."""
        self._raise_writer_error()
        if self._closed:
            raise LcscError("Recorder: update() after close()")
        if step % self.every:
            return False
        sd = (
            model_or_state_dict.state_dict()
            if isinstance(model_or_state_dict, torch.nn.Module)
            else model_or_state_dict
        )
        with torch.no_grad():
            snapshot = {k: v.detach().to("cpu", copy=True) for k, v in sd.items()}
        self._queue.put((int(step), snapshot))
        self.last_step = int(step)
        return True

    def flush(self) -> None:
        """Wait until every recorded checkpoint is on disk."""
        self._queue.join()
        self._raise_writer_error()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._raise_writer_error()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # ----------------------------------------------------------------- writer thread
    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:
                    self._save(*item)
            except BaseException as exc:  # reported on the training thread
                self._error = (
                    exc
                    if isinstance(exc, LcscError) and not isinstance(exc, WriteError)
                    else CheckpointError(
                        f"Recorder: writing step {item[0]} to {self.directory} failed: {exc}"
                    )
                )
            finally:
                self._queue.task_done()

    def _save(self, step: int, sd: dict[str, torch.Tensor]) -> None:
        stale = [(s, p) for s, p in self._files if s >= step]
        if stale:
            log.warning(
                "Recorder: step %d restarts the trajectory; dropping %d later checkpoints",
                step,
                len(stale),
            )
            for _, p in stale:
                p.unlink(missing_ok=True)
            self._files = [(s, p) for s, p in self._files if s < step]
            self._recon = None
        path = self.directory / layout.checkpoint_name(step)
        md = {layout.KEY_STEP: str(step), layout.KEY_METADATA: self._metadata_json}
        if self.compact and self._recon is not None and self._files:
            base_step = self._files[-1][0]
            tensors, exponents = {}, {}
            for k, v in sd.items():
                if _deltable(v):
                    q, e = encode_delta(v, self._recon[k])
                    self._recon[k] = self._recon[k] + decode_delta(q, e, v.dtype)
                    tensors[k], exponents[k] = q, e
                else:
                    tensors[k] = v
            md |= {
                layout.KEY_ENCODING: layout.DELTA,
                layout.KEY_BASE_STEP: str(base_step),
                layout.KEY_EXPONENTS: json.dumps(exponents),
            }
            write_checkpoint(path, tensors, md)
        else:
            write_checkpoint(path, sd, md | {layout.KEY_ENCODING: layout.FULL})
            if self.compact:
                self._recon = {k: v.clone() for k, v in sd.items() if _deltable(v)}
        self._files.append((step, path))
        if self.keep is not None:
            while len(self._files) > self.keep:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Delete the oldest checkpoint; in compact mode first turn its successor into a full
        file (atomically replacing the delta), so the chain stays decodable at every moment."""
        (_, oldest), (next_step, nxt) = self._files[0], self._files[1]
        successor = read_checkpoint(nxt, strip_wrappers=False)  # rewritten as stored
        if successor.metadata.get(layout.KEY_ENCODING) == layout.DELTA:
            base = read_checkpoint(oldest, strip_wrappers=False)
            exponents = json.loads(successor.metadata[layout.KEY_EXPONENTS])
            tensors = {
                k: base.tensors[k] + decode_delta(t, exponents[k], base.tensors[k].dtype)
                if k in exponents
                else t.clone()
                for k, t in successor.tensors.items()
            }
            md = {
                k: v
                for k, v in successor.metadata.items()
                if k not in (layout.KEY_BASE_STEP, layout.KEY_EXPONENTS)
            }
            write_checkpoint(nxt, tensors, md | {layout.KEY_ENCODING: layout.FULL})
            del base
        del successor
        oldest.unlink(missing_ok=True)
        self._files.pop(0)
        assert self._files[0][0] == next_step


def _deltable(t: torch.Tensor) -> bool:
    return t.dtype in (torch.float32, torch.float64)

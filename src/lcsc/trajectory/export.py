"""Combined weights as a folder that diffusers' (or transformers') ``from_pretrained`` loads.

The folder holds the weights under the component's usual file name
(``diffusion_pytorch_model.safetensors``) and the component's ``config.json``, copied from the
last checkpoint folder. A new folder is built under a temporary name and renamed into place;
an existing folder has each file replaced atomically, so no reader sees a partial file.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from lcsc.atomic import _UMASK, TMP_PREFIX, write_bytes
from lcsc.checkpoint import write_checkpoint
from lcsc.errors import LcscError
from lcsc.trajectory.sources import Source

CONFIG = "config.json"


def weights_name(source: Source) -> str:
    """The weights file name ``from_pretrained`` looks for, after the source's own files."""
    name = source.files[-1].name
    if name.endswith(".safetensors") and "-of-" not in name:
        return name
    if name.startswith("diffusion_pytorch_model"):
        return "diffusion_pytorch_model.safetensors"
    return "model.safetensors"


def save_pretrained(
    directory: Path,
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
    source: Source,
) -> Path:
    """Write ``state`` and ``source.config`` into ``directory``; returns the weights path."""
    if source.config is None:
        raise LcscError(f"{directory}: a folder output needs a component with a config.json")
    if directory.exists() and not directory.is_dir():
        raise LcscError(f"{directory}: exists and is not a folder")
    config = source.config.read_bytes()
    name = weights_name(source)
    metadata = {**metadata, "format": "pt"}  # what transformers' loader checks
    if directory.is_dir():
        write_checkpoint(directory / name, state, metadata)
        write_bytes(directory / CONFIG, config)
        return directory / name
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + directory.name + ".", dir=directory.parent))
    try:
        write_checkpoint(tmp / name, state, metadata)
        write_bytes(tmp / CONFIG, config)
        tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700; give the usual permissions
        tmp.rename(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return directory / name

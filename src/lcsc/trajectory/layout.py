"""How a trajectory lives on disk: file names, per-file metadata keys, the directory manifest.

A Recorder directory holds ``step-<step>.safetensors`` files and ``trajectory.json``
(format version, storage mode and the user's metadata such as the model config).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lcsc.atomic import TMP_PREFIX, write_json
from lcsc.errors import TrajectoryError

MANIFEST = "trajectory.json"
FORMAT = "lcsc-trajectory"
VERSION = 1

# Per-file safetensors metadata keys.
KEY_STEP = "lcsc_step"
KEY_ENCODING = "lcsc_encoding"  # "full" or "delta-f16"
KEY_BASE_STEP = "lcsc_base_step"  # delta files: the step of the previous file in the chain
KEY_EXPONENTS = "lcsc_exponents"  # delta files: JSON {key: power-of-two scale exponent}
KEY_METADATA = "lcsc_metadata"  # JSON of the user's metadata
FULL = "full"
DELTA = "delta-f16"

_NUMBER = re.compile(r"\d+")


def checkpoint_name(step: int) -> str:
    return f"step-{step:010d}.safetensors"


def recorded_files(directory: Path) -> list[Path]:
    """The checkpoint files of a Recorder directory (temporary files excluded), unsorted."""
    return [
        p
        for p in directory.glob("step-*.safetensors")
        if not p.name.startswith(TMP_PREFIX) and step_from_name(p) is not None
    ]


def step_from_name(path: Path) -> int | None:
    """The last number in a file's stem (``ckpt_ema_0.999_012000.pt`` -> 12000), or None."""
    numbers = _NUMBER.findall(path.stem)
    return int(numbers[-1]) if numbers else None


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TrajectoryError(f"{path}: unreadable trajectory manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TrajectoryError(f"{path}: not an lcsc trajectory manifest")
    if manifest.get("version", 0) > VERSION:
        raise TrajectoryError(
            f"{path}: written by a newer lcsc (format version {manifest['version']})"
        )
    return manifest


def write_manifest(directory: Path, **fields: Any) -> None:
    write_json(directory / MANIFEST, {"format": FORMAT, "version": VERSION, **fields})

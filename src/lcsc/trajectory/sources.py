"""Where a run's checkpoints are: the folder layouts that training code leaves behind.

:func:`find_source` recognises, in a folder given by the user:

- an lcsc Recorder directory (:mod:`lcsc.trajectory.layout`);
- diffusers/accelerate ``checkpoint-<step>/`` (or accelerate's automatic ``checkpoint_<i>/``)
  folders, each holding model components: subfolders such as ``unet/`` and ``unet_ema/``
  (``config.json`` + ``diffusion_pytorch_model.safetensors``, or a sharded ``.index.json``) or
  weight files such as accelerate's ``model.safetensors``; ``unet`` is used unless another
  component is chosen;
- Lightning ``epoch=E-step=S.ckpt`` files (``last.ckpt`` is ignored), also in ``checkpoints/``;
- timm ``checkpoint-<epoch>.pth.tar`` files (``last.pth.tar``, ``model_best.pth.tar`` ignored);
- any other folder of checkpoint files.

Steps come from the file name (Lightning's ``step=S``, else its last number), else from one of
the two nearest parent folders named like a checkpoint (``checkpoint-500/unet/...`` -> 500).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lcsc.atomic import TMP_PREFIX
from lcsc.checkpoint import SHARD_INDEX, is_checkpoint_file
from lcsc.errors import TrajectoryError
from lcsc.trajectory import layout

RECORDER = "lcsc Recorder directory"
FOLDERS = "diffusers/accelerate checkpoint-<step>/ folders"
LIGHTNING = "Lightning checkpoints (epoch=E-step=S.ckpt)"
TIMM = "timm checkpoints (checkpoint-<epoch>.pth.tar)"
FLAT = "folder of checkpoint files"
FILES = "checkpoint files"

DEFAULT_COMPONENT = "unet"
_CHECKPOINT_DIR = re.compile(r"^checkpoint[-_](\d+)$")
_STEP = re.compile(r"(?:^|[-_])step=(\d+)")
_NUMBER = re.compile(r"\d+")
# Folder names that are a step: checkpoint-500, checkpoint_3, step_500, global_step500, 500.
_STEP_DIR = re.compile(r"^(?:checkpoint|ckpt|step|global_step|iter|iteration|epoch)?[-_=]?(\d+)$")
_TIMM = re.compile(r"^checkpoint-\d+\.pth\.tar$")
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.")
# Files accelerate's save_state writes beside the models.
_NOT_MODELS = re.compile(r"^(optimizer|scheduler|sampler|scaler|random_states|custom_checkpoint)")
_WEIGHT_NAMES = ("diffusion_pytorch_model", "model", "pytorch_model")


@dataclass(frozen=True)
class Source:
    """The checkpoint files of a run, and how they were found."""

    layout: str
    files: tuple[Path, ...]
    component: str | None = None  # the model component used (checkpoint folders)
    components: tuple[str, ...] = ()  # every component found in the last checkpoint folder
    config: Path | None = None  # that component's config.json in the last checkpoint folder
    ignored: tuple[Path, ...] = ()
    notes: tuple[str, ...] = ()
    metadata: dict[str, Any] | None = field(default=None, compare=False)  # Recorder manifest
    root: Path | None = None  # the folder scanned; None for files given one by one


def find_source(paths: Sequence[str | os.PathLike[str]], component: str | None = None) -> Source:
    """The checkpoints in one folder (any layout above), or in the given files and
    ``checkpoint-<step>/`` folders, ordered by step (then name)."""
    ps = [Path(p) for p in paths]
    if not ps:
        raise TrajectoryError("no checkpoint files given")
    if len(ps) == 1 and ps[0].is_dir() and not _CHECKPOINT_DIR.match(ps[0].name):
        return _scan(ps[0], component)
    folders = [p for p in ps if p.is_dir()]
    for p in folders:
        if not _CHECKPOINT_DIR.match(p.name):
            raise TrajectoryError(
                f"{p}: is a directory; give one directory, or files and checkpoint-<step> folders"
            )
    if not folders:
        _no_component(component, ps[0], FILES)
        return Source(FILES, tuple(ps), config=_component_config(_order(ps)[-1]))
    picked = _folders(folders, component)
    files = iter(picked.files)
    ordered = tuple(next(files) if p.is_dir() else p for p in ps)  # the order given
    return replace(picked, layout=FOLDERS if len(folders) == len(ps) else FILES, files=ordered)


def no_checkpoints(folder: Path) -> str:
    """Why ``folder`` gave no checkpoints, naming the subfolders that hold runs of their own
    (``lightning_logs/version_0``, one run each), if any."""
    runs = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
        try:
            found = bool(find_source([child]).files)
        except TrajectoryError:
            found = True  # it holds checkpoints, if not one clean run
        if found:
            runs.append(child.name)
    if not runs:
        return f"{folder}: no checkpoints found (empty folder?)"
    return (
        f"{folder}: no checkpoints found; its subfolders {', '.join(runs)} hold runs: give one,"
        f" e.g. {folder / runs[0]}"
    )


def is_component_weights(path: Path) -> bool:
    """Whether ``path`` has the standard name of a diffusers/transformers component's weights
    (``diffusion_pytorch_model.safetensors``, ...): the name all components share, so the
    folder it lies in (``unet``, ``unet_ema``) tells which component it is."""
    return Path(path.name.removesuffix(SHARD_INDEX)).stem in _WEIGHT_NAMES


def _component_config(weights: Path) -> Path | None:
    """The ``config.json`` beside a component's weights file (given as
    ``checkpoint-<step>/unet/diffusion_pytorch_model.safetensors``), if there is one."""
    config = weights.parent / "config.json"
    return config if is_component_weights(weights) and config.is_file() else None


def lists_as_checkpoint(source: Source, path: Path) -> bool:
    """Whether a file or folder written at ``path`` would be taken as (part of) a checkpoint
    the next time ``source.root`` is scanned."""
    if source.root is None:
        return False
    try:
        parts = path.resolve().relative_to(source.root.resolve()).parts
    except (OSError, ValueError):
        return False
    if not parts:
        return True
    if source.layout == FOLDERS:  # a checkpoint-<step> folder, or inside one
        return bool(_CHECKPOINT_DIR.match(parts[0]))
    if len(parts) > 1:
        return False
    name = Path(parts[0])
    if source.layout == RECORDER:
        return name.match("step-*.safetensors") and layout.step_from_name(name) is not None
    if source.layout == LIGHTNING:
        return name.suffix == ".ckpt" and bool(_STEP.search(name.stem))
    if source.layout == TIMM:
        return bool(_TIMM.match(name.name))
    return is_checkpoint_file(name)  # a plain folder: any checkpoint file


def step_from_path(path: Path) -> int | None:
    """Lightning's ``step=S`` or the last number in the file name, else the number of the
    nearer of the two parent folders named like a step (``checkpoint-500``, ``step_500``,
    ``500``); None if there is none. Other folder names (``exp3``) never give a step."""
    stem = Path(path.name.removesuffix(".pth.tar").removesuffix(SHARD_INDEX)).stem
    step = _STEP.search(stem)
    if step:
        return int(step.group(1))
    numbers = _NUMBER.findall(stem)
    if numbers:
        return int(numbers[-1])
    for parent in path.parents[:2]:
        match = _STEP_DIR.match(parent.name)
        if match:
            return int(match.group(1))
    return None


def parse_steps(text: str) -> list[int]:
    """``"10,20,30"``, or ``"START:STOP:STEP"`` for an evenly spaced range (STOP included)."""
    try:
        if ":" in text:
            start, stop, step = (int(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            return list(range(start, stop + 1, step))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise TrajectoryError(
            f"steps '{text}': expected integers like 10,20,30 or START:STOP:STEP"
        ) from None


def _order(files: list[Path]) -> tuple[Path, ...]:
    def key(p: Path) -> tuple[Any, ...]:
        step = step_from_path(p)
        natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]
        return (step is None, step or 0, natural)

    return tuple(sorted(files, key=key))


def _no_component(component: str | None, where: Path, found: str) -> None:
    if component is not None:
        raise TrajectoryError(
            f"{where}: component '{component}' given, but this is a {found}, without"
            " checkpoint-<step>/ folders"
        )


def _scan(d: Path, component: str | None) -> Source:
    manifest = layout.read_manifest(d)
    recorded = layout.recorded_files(d)
    if recorded or manifest:
        _no_component(component, d, RECORDER)
        return Source(RECORDER, _order(recorded), metadata=manifest.get("metadata"), root=d)
    children = sorted(d.iterdir())
    folders = sorted(
        (p for p in children if p.is_dir() and _CHECKPOINT_DIR.match(p.name)), key=_key
    )
    if folders:
        picked = _folders(folders, component)
        return replace(picked, files=_order(list(picked.files)), root=d)
    files = [
        p
        for p in children
        if p.is_file() and is_checkpoint_file(p) and not p.name.startswith(TMP_PREFIX)
    ]
    if not files and (d / "checkpoints").is_dir():  # lightning_logs/version_N/
        return _scan(d / "checkpoints", component)
    lightning = [p for p in files if p.suffix == ".ckpt" and _STEP.search(p.stem)]
    timm = [p for p in files if _TIMM.match(p.name)]
    for found, kind, note in (
        (lightning, LIGHTNING, ()),
        (timm, TIMM, ("steps are epochs; pass --steps with the iterations for EMA rates",)),
    ):
        if found:
            _no_component(component, d, kind)
            ignored = tuple(p for p in files if p not in found)
            return Source(kind, _order(found), ignored=ignored, notes=note, root=d)
    _no_component(component, d, FLAT)
    if any(p.name.endswith(SHARD_INDEX) for p in files):
        files = [p for p in files if not _SHARD.search(p.name)]  # read through their index
    numbered = [p for p in files if layout.step_from_name(p) is not None]
    _one_series(d, numbered)
    if numbered and len(numbered) < len(files):  # best.pt, final.pt beside step files
        ignored = tuple(p for p in files if p not in numbered)
        return Source(FLAT, _order(numbered), ignored=ignored, root=d)
    return Source(FLAT, _order(files), root=d)


def _one_series(d: Path, files: list[Path]) -> None:
    """Refuse a folder holding several series of numbered files (guided-diffusion's
    ``model<step>.pt`` beside ``ema_<rate>_<step>.pt``): their steps would collide."""
    series: dict[str, int] = {}
    for p in files:
        pattern = re.sub(r"\d+(?=\D*$)", "*", p.name)
        series[pattern] = series.get(pattern, 0) + 1
    several = sorted(k for k, n in series.items() if n > 1)
    if len(several) > 1:
        raise TrajectoryError(
            f"{d}: holds several series of checkpoints ({', '.join(several)}); give the files"
            f" of one, e.g. {d / several[0]}"
        )


def _folders(folders: list[Path], component: str | None) -> Source:
    """The chosen component's weights file in each checkpoint folder, in the folders' order."""
    found = [(f, _components(f)) for f in folders]
    last, available = max(found, key=lambda x: _key(x[0]))
    if not available:
        raise TrajectoryError(f"{last}: no model weights in this checkpoint folder")
    if component is None:
        if DEFAULT_COMPONENT in available:
            component = DEFAULT_COMPONENT
        elif len(available) == 1:
            component = next(iter(available))
        else:
            raise TrajectoryError(
                f"{last}: several model components ({', '.join(sorted(available))});"
                " choose one with --component"
            )
    files = []
    for folder, comps in found:
        if component not in comps:
            has = ", ".join(sorted(comps)) or "none"
            raise TrajectoryError(f"{folder}: no component '{component}' (found: {has})")
        files.append(comps[component])
    config = last / component / "config.json"
    notes = ()
    if any(f.name.startswith("checkpoint_") for f in folders):
        notes = ("steps are checkpoint_<i> save indices; pass --steps with the training steps",)
    return Source(
        FOLDERS,
        tuple(files),
        component,
        tuple(sorted(available)),
        config if config.is_file() else None,
        notes=notes,
    )


def _key(folder: Path) -> int:
    return int(_CHECKPOINT_DIR.match(folder.name).group(1))  # type: ignore[union-attr]


def _components(folder: Path) -> dict[str, Path]:
    """Component name -> weights file: subfolders with weights, and weight files beside
    accelerate's optimizer and random states (``model.safetensors`` -> ``model``)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            weights = _weights_file(p)
            if weights is not None:
                out[p.name] = weights
        elif is_checkpoint_file(p) and not _NOT_MODELS.match(p.name) and not _SHARD.search(p.name):
            out[p.name.split(".", 1)[0]] = p
    return out


def _weights_file(folder: Path) -> Path | None:
    """A component folder's weights: the standard names first (safetensors over .bin, a single
    file over a shard index), else its only safetensors or .bin file."""
    names = {p.name: p for p in folder.iterdir() if p.is_file() and is_checkpoint_file(p)}
    for suffix in (".safetensors", ".bin"):
        for base in _WEIGHT_NAMES:
            for name in (base + suffix, base + suffix + SHARD_INDEX):
                if name in names:
                    return names[name]
        others = [p for n, p in names.items() if n.endswith(suffix) and not _SHARD.search(n)]
        if len(others) == 1:
            return others[0]
    return None

"""The restricted unpickler: tensors out of any torch file, and never a line of the file's code."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import CheckpointError
from lcsc.unpickler import Placeholder, restricted_load

FORMATS = ["zip", "legacy"]


class HParams:
    """A user's hyper-parameter class whose unpickling has a visible side effect."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


def _save(obj: object, path: Path, fmt: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
    return path


class _RawPickler(pickle.Pickler):
    """Writes the given bytes as the file's pickle: torch's container around a crafted payload."""

    def dump(self, obj: object) -> None:
        self._out.write(obj)  # type: ignore[attr-defined]

    def __init__(self, file, protocol=None, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(file, protocol)
        self._out = file


def _save_raw(raw: bytes, path: Path, fmt: str) -> Path:
    module = types.SimpleNamespace(__name__="raw", Pickler=_RawPickler, dump=pickle.dump)
    torch.save(raw, path, pickle_module=module, _use_new_zipfile_serialization=fmt == "zip")
    return path


def _reducing(func: object, *args: object) -> object:
    """An object whose pickle calls ``func(*args)`` on a full unpickle."""
    return type("R", (), {"__reduce__": lambda self: (func, args)})()


def _attacks(marker: Path) -> dict[str, bytes]:
    m = str(marker)
    touch = f"touch {m}"
    inner = _reducing(eval, f"['touch', {m!r}]")
    nested = type(
        "N", (), {"__reduce_ex__": lambda self, proto: (subprocess.check_call, (inner,))}
    )()
    return {
        "os.system": pickle.dumps(_reducing(os.system, touch), protocol=2),
        "builtins.eval": pickle.dumps(
            _reducing(eval, f"__import__('pathlib').Path({m!r}).touch()"), protocol=2
        ),
        "builtins.exec": pickle.dumps(
            _reducing(exec, f"import pathlib; pathlib.Path({m!r}).touch()"), protocol=2
        ),
        "subprocess": pickle.dumps(_reducing(subprocess.check_call, ["touch", m]), protocol=2),
        "nested __reduce_ex__": pickle.dumps({"w": [nested]}, protocol=2),
        "getattr(__import__('os'), 'system')": (
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'"
            + touch.encode()
            + b"'\ntR."
        ),
        "posix.system (protocol 0)": b"cposix\nsystem\n(S'" + touch.encode() + b"'\ntR.",
        # BUILD sets __setstate__ in a Namespace's __dict__, a second BUILD calls it.
        "BUILD on a placeholder": (
            b"\x80\x02cargparse\nNamespace\n)\x81}S'__setstate__'\ncposix\nsystem\nsbS'"
            + touch.encode()
            + b"'\nb."
        ),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_attacks_yield_placeholders_and_never_run(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    for name, raw in _attacks(marker).items():
        path = _save_raw(raw, tmp_path / f"evil-{fmt}.pt", fmt)
        if name.startswith("getattr"):  # calling what a placeholder call returned: refused
            with pytest.raises(CheckpointError, match="not callable"):
                restricted_load(path)
        else:
            assert restricted_load(path)[1], name
        with pytest.raises(CheckpointError, match=r"evil-\w+\.pt"):
            read_checkpoint(path)  # weights_only refuses, the restricted unpickler runs nothing
        assert not marker.exists(), name
        pickle.loads(raw)  # the payload is real: a full unpickle runs it
        assert marker.exists(), name
        marker.unlink()


def test_placeholder_keeps_the_call_inertly(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _save_raw(_attacks(marker)["os.system"], tmp_path / "evil.pt", "zip")
    obj, placeholders = restricted_load(path)
    assert isinstance(obj, Placeholder)
    assert obj.global_name == os.system.__module__ + ".system"
    assert obj.args == ((f"touch {marker}",), {})
    assert placeholders == [f"{os.system.__module__}.system"]


def test_named_modules_are_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "lcsc_evil_module.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Thing: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = b"\x80\x02clcsc_evil_module\nThing\n)\x81."
    for fmt in FORMATS:
        obj, placeholders = restricted_load(_save_raw(raw, tmp_path / f"i-{fmt}.pt", fmt))
        assert placeholders == ["lcsc_evil_module.Thing"]
    assert not marker.exists() and "lcsc_evil_module" not in sys.modules
    pickle.loads(raw)  # a plain unpickle imports it
    assert marker.exists()
    del sys.modules["lcsc_evil_module"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_real_checkpoint_with_hyperparameter_objects(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "setstate-ran"
    base = torch.arange(12.0)
    sd = {
        "w": base[:6].view(2, 3),  # two views of one storage
        "b": base[6:],
        "h": torch.linspace(0, 1, 5).half(),
        "bf": torch.linspace(0, 1, 4).bfloat16(),
        "p": torch.nn.Parameter(torch.ones(2, 2)),
        "n": torch.tensor(7),
    }
    ckpt = {
        "state_dict": sd,
        "hyper_parameters": {"args": argparse.Namespace(lr=0.1), "cfg": HParams(str(marker))},
        "epoch": 3,
    }
    path = _save(ckpt, tmp_path / f"real.{fmt}.ckpt", fmt)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what lcsc used to stop at
    got = read_checkpoint(path)
    assert not marker.exists()
    assert set(got.tensors) == set(sd)
    for key, t in sd.items():
        assert got.tensors[key].dtype == t.dtype and torch.equal(got.tensors[key], t.detach())
    assert got.extraction.key == "state_dict"
    assert got.extraction.placeholders == ("argparse.Namespace", f"{__name__}.HParams")
    obj, _ = restricted_load(path)
    assert obj["hyper_parameters"]["args"].state == {"lr": 0.1}  # data kept, class not built
    assert obj["epoch"] == 3
    torch.load(path, weights_only=False)  # the side effect is real on a full unpickle
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_files_are_named(tmp_path: Path, fmt: str) -> None:
    path = _save({"w": torch.randn(100), "args": argparse.Namespace()}, tmp_path / "c.pt", fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 60])
    with pytest.raises(CheckpointError, match=r"c\.pt"):
        restricted_load(path)
    path.write_bytes(b"\x80\x02K\x01.")  # a pickle, but not a torch file
    with pytest.raises(CheckpointError, match=r"c\.pt.*not a torch checkpoint"):
        restricted_load(path)


class Marked(torch.Tensor):
    """A tensor subclass: pickled through torch._tensor._rebuild_from_type_v2."""


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensor_subclass_comes_back_as_a_plain_tensor(tmp_path: Path, fmt: str) -> None:
    t = torch.arange(4.0).as_subclass(Marked)
    path = _save({"w": t, "p": torch.nn.Parameter(torch.ones(2))}, tmp_path / "s.pt", fmt)
    obj, placeholders = restricted_load(path)
    assert type(obj["w"]) is torch.Tensor and torch.equal(obj["w"], torch.arange(4.0))
    assert placeholders == [f"{__name__}.Marked"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_protocol_2_builtin_names_build_plain_containers(tmp_path: Path, fmt: str) -> None:
    hp = {
        "object_type": dict,  # type references, as OmegaConf's metadata holds them
        "element_type": list,
        "key_type": int,
        "tags": {"a", "b"},  # protocol 2 pickles a set as a call: __builtin__.set([...])
        "frozen": frozenset({1, 2}),
        "pair": (1.5, "x"),
    }
    path = _save({"w": torch.ones(2), "hp": hp}, tmp_path / f"p2.{fmt}.pt", fmt)
    raw = path.read_bytes()
    assert b"c__builtin__\ndict\n" in raw and b"c__builtin__\nset\n" in raw  # Python 2 names
    obj, placeholders = restricted_load(path)
    assert placeholders == []
    assert obj["hp"] == hp
    assert obj["hp"]["object_type"] is dict and obj["hp"]["key_type"] is int
    assert type(obj["hp"]["tags"]) is set and type(obj["hp"]["frozen"]) is frozenset


def test_omegaconf_config_lists_only_its_own_classes(tmp_path: Path) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({"lr": 0.1, "layers": [1, 2]})
    path = _save({"state_dict": {"w": torch.ones(2)}, "cfg": cfg}, tmp_path / "oc.pt", "zip")
    got = read_checkpoint(path)
    assert torch.equal(got.tensors["w"], torch.ones(2))
    assert "omegaconf.dictconfig.DictConfig" in got.extraction.placeholders
    assert not [n for n in got.extraction.placeholders if n.startswith(("builtins", "__builtin"))]


def test_python_2_names_of_other_builtins_stay_placeholders(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = f'__import__("pathlib").Path("{marker}").touch()'
    for module in (b"__builtin__", b"builtins"):
        raw = b"c" + module + b"\neval\n(S'" + code.encode() + b"'\ntR."
        obj, placeholders = restricted_load(_save_raw(raw, tmp_path / "e.pt", "zip"))
        assert placeholders == ["builtins.eval"] and obj.args == ((code,), {})
        assert not marker.exists()
    pickle.loads(raw)  # the payload is real: a full unpickle runs it
    assert marker.exists()

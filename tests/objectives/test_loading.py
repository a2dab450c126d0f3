"""Loading a user's objective: errors in the user's code name the objective (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lcsc.errors import LcscError
from lcsc.objectives.loading import load_objective, objective_identity


def test_factory_errors_keep_their_cause(tmp_path: Path) -> None:
    (tmp_path / "obj.py").write_text("def make(x='1'):\n    raise KeyError(x)\n")
    spec = f"{tmp_path / 'obj.py'}:make"
    with pytest.raises(LcscError, match=r"make\(\) failed: KeyError: '7'") as info:
        load_objective(spec, {"x": "7"})
    assert isinstance(info.value.__cause__, KeyError)  # the original, for a debugger
    with pytest.raises(LcscError, match="bad --objective-arg.*'y'"):
        load_objective(spec, {"y": "7"})


def test_identity_names_a_file_by_its_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = objective_identity(f"{tmp_path / 'obj.py'}:make", {"b": "2", "a": "1"})
    assert objective_identity("obj.py:make", {"a": "1", "b": "2"}) == absolute
    assert absolute == {"spec": f"{tmp_path / 'obj.py'}:make", "args": {"a": "1", "b": "2"}}
    assert objective_identity("pkg.mod:make")["spec"] == "pkg.mod:make"

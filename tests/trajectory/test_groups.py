"""Per-group coefficients: grouping by patterns (and its errors), the grouped combination
against a closed form, one group against the ungrouped combination, from the span too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from lcsc.checkpoint import read_checkpoint
from lcsc.errors import LcscError
from lcsc.trajectory import Trajectory
from lcsc.trajectory.groups import (
    AUTO,
    REST,
    combine_groups,
    module_patterns,
    parse_groups,
    resolve_groups,
    split_patterns,
)
from lcsc.trajectory.span import SpanCombiner
from tests.conftest import train

K = 4
# Integer-valued tensors: every combination below is exact in float32 (dyadic coefficients).
BASE = {
    "enc.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5.0,
    "enc.bias": torch.tensor([1.0, -2.0, 3.0, 4.0]),
    "encoder.norm": torch.tensor([2.0, 6.0]),
    "dec.weight": torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.0, 5.0]]),
    "dec.scale": torch.tensor([0.5, 1.5, -2.5], dtype=torch.float64),
    "dec.count": torch.tensor([7], dtype=torch.int64),
}


def write_run(folder: Path, fmt: str) -> Trajectory:
    """K checkpoints ``theta_i = (i + 1) * BASE`` (integer buffers: ``BASE + i``)."""
    folder.mkdir()
    paths = []
    for i in range(K):
        state = {k: v * (i + 1) if v.is_floating_point() else v + i for k, v in BASE.items()}
        path = folder / f"ckpt_{i}.{fmt}"
        if fmt == "safetensors":
            safetensors.torch.save_file(state, str(path))
        else:
            torch.save(state, path)
        paths.append(path)
    return Trajectory.from_files(paths, steps=[10 * (i + 1) for i in range(K)])


@pytest.fixture(params=["safetensors", "pt"])
def traj(request, tmp_path: Path) -> Trajectory:
    return write_run(tmp_path / "run", request.param)


def test_patterns_globs_prefixes_alternatives_and_rest() -> None:
    keys = list(BASE)
    groups = resolve_groups(keys, ["enc", "dec.*e*|dec.count"])
    # "enc" is a module prefix: enc.* but not encoder.*; the rest keeps the checkpoint's order
    assert groups.names == ("enc", "dec.*e*|dec.count", "rest")
    assert groups.members == (
        ("enc.weight", "enc.bias"),
        ("dec.weight", "dec.scale", "dec.count"),
        ("encoder.norm",),
    )
    assert groups.keys == tuple(keys)
    assert groups.patterns == ["enc", "dec.*e*|dec.count"]
    assert resolve_groups(keys, groups.patterns) == groups
    everything = resolve_groups(keys, ["*"])
    assert everything.names == ("*",) and everything.members == (tuple(keys),)
    assert split_patterns(["a, b", "c"]) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["enc", "nothing.*"], "groups: pattern 'nothing.*' matches no key of the checkpoints"),
        (["enc", "dec|missing"], "groups: pattern 'missing' matches no key"),
        (["enc.*", "*.bias"], "key 'enc.bias' matches both 'enc.*' and '*.bias'"),
        (["rest"], "pattern 'rest' is reserved"),
        (["enc", "enc"], "pattern 'enc' is given twice"),
        (["enc|"], "pattern 'enc|' has an empty part"),
        ([], "give at least one pattern"),
    ],
)
def test_bad_patterns_are_one_error_naming_them(patterns: list[str], message: str) -> None:
    with pytest.raises(LcscError) as info:
        resolve_groups(list(BASE), patterns)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_empty_pattern_in_a_list_is_an_error() -> None:
    with pytest.raises(LcscError, match="empty pattern in 'a,,b'"):
        split_patterns(["a,,b"])


def test_grouped_combine_equals_the_closed_form(traj: Trajectory) -> None:
    groups = resolve_groups(traj.keys, ["enc", "dec"])  # rest: encoder.norm
    a = np.array([[0.25, 0.25, 0.25, 0.25], [-0.5, 0.0, 0.75, 0.75], [1.0, 0.0, 0.0, 0.0]])
    got = combine_groups(traj, groups, a)
    assert list(got) == traj.keys
    scale = a @ np.arange(1.0, K + 1)  # theta_i = (i + 1) * BASE
    row = {k: g for g, members in enumerate(groups.members) for k in members}
    for key, base in BASE.items():
        # floats: exact (dyadic times small integers); integer buffers: the last checkpoint's
        want = base * float(scale[row[key]]) if base.is_floating_point() else base + (K - 1)
        assert got[key].dtype == base.dtype
        assert torch.equal(got[key], want), key
    flat = combine_groups(traj, groups, a.ravel())  # the flattened matrix is the same
    assert all(torch.equal(flat[k], got[k]) for k in got)


def test_one_group_is_exactly_the_ungrouped_combination(traj: Trajectory) -> None:
    a = np.random.default_rng(0).normal(size=K)
    a /= a.sum()
    want = traj.combine(a)
    for groups in (resolve_groups(traj.keys, ["*"]), resolve_groups(traj.keys, ["enc"])):
        same_rows = np.tile(a, (len(groups), 1))  # equal rows: one combine of every key
        got = combine_groups(traj, groups, same_rows)
        assert list(got) == list(want)
        assert all(torch.equal(got[k], want[k]) for k in want)
    got = combine_groups(traj, None, a)  # no groups: the trajectory's own combine
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_parse_groups_none_auto_and_patterns(traj: Trajectory) -> None:
    assert parse_groups(["none"], traj.keys) is None
    assert parse_groups([" auto "], traj.keys) == AUTO  # resolved later, by the search
    assert parse_groups(["enc", "dec"], traj.keys) == resolve_groups(traj.keys, ["enc", "dec"])
    assert parse_groups(["enc,dec"], traj.keys) == resolve_groups(traj.keys, ["enc", "dec"])
    with pytest.raises(LcscError, match="matches no key"):
        parse_groups(["nothing"], traj.keys)


def test_combine_of_some_keys(traj: Trajectory) -> None:
    a = np.array([0.1, 0.2, 0.3, 0.4])
    full = traj.combine(a)
    some = {"dec.count", "enc.weight", "dec.scale"}
    part = traj.combine(a, keys=some)
    assert list(part) == [k for k in traj.keys if k in some]  # the checkpoints' order
    assert all(torch.equal(part[k], full[k]) for k in part)
    with pytest.raises(LcscError, match="no key 'nope' in the checkpoints"):
        traj.combine(a, keys=["nope"])


def test_compact_trajectory_combines_groups_through_its_chains(tmp_path: Path) -> None:
    train(tmp_path / "run", steps=40, every=5, compact=True)
    traj = Trajectory.open(tmp_path / "run")
    groups = resolve_groups(traj.keys, ["0", "3"])
    a = np.random.default_rng(2).normal(size=(len(groups), len(traj)))
    got = combine_groups(traj, groups, a)
    for row, members in zip(a, groups.members, strict=True):
        full = traj.combine(row)  # delta-coded keys: one segment per key either way
        assert all(torch.equal(got[k], full[k]) for k in members)


def test_matrix_shape_errors(traj: Trajectory) -> None:
    groups = resolve_groups(traj.keys, ["enc"])
    with pytest.raises(LcscError, match=r"expected \(2, 4\) coefficients, one row per group"):
        groups.matrix(np.ones((3, K)), K)
    with pytest.raises(LcscError, match="finite"):
        combine_groups(traj, groups, np.full((2, K), np.nan))


def test_span_combines_groups_like_the_trajectory(tmp_path: Path) -> None:
    traj = write_run(tmp_path / "run", "safetensors")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2, K))
    span = SpanCombiner.build(traj, vectors)
    assert span is not None
    groups = resolve_groups(traj.keys, ["enc", "dec"])
    a = rng.normal(size=(3, 2)) @ vectors  # every row in the span
    got, want = combine_groups(span, groups, a), combine_groups(traj, groups, a)
    assert list(got) == list(want) and span.in_span == 3
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-5)
    one = resolve_groups(traj.keys, ["*"])  # one group: the span's own combination, exactly
    got_one, want_one = combine_groups(span, one, a[:1]), span.combine(a[0])
    assert all(torch.equal(got_one[k], want_one[k]) for k in want_one)


def test_save_combination_with_groups(traj: Trajectory, tmp_path: Path) -> None:
    groups = resolve_groups(traj.keys, ["enc", "dec"])
    a = np.array([[0.25, 0.25, 0.25, 0.25], [0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    out = traj.save_combination(tmp_path / "merged.safetensors", a, groups=groups)
    ckpt = read_checkpoint(out)
    want = combine_groups(traj, groups, a)
    assert all(torch.equal(ckpt.tensors[k], want[k]) for k in want)
    assert json.loads(ckpt.metadata["lcsc_groups"]) == ["enc", "dec", "rest"]
    assert json.loads(ckpt.metadata["lcsc_coefficients"]) == a.tolist()


def test_module_patterns_one_group_per_top_level_module() -> None:
    keys = [
        "net.blocks.0.fc1.weight",
        "net.blocks.0.fc1.bias",
        "net.blocks.1.fc1.weight",
        "net.embed.mlp.0.bias",
        "net.inp.weight",
        "net.out.bias",
    ]
    patterns = module_patterns(keys)
    assert patterns == ["net.blocks.0", "net.blocks.1", "net.embed", "net.inp", "net.out"]
    groups = resolve_groups(keys, patterns)
    assert REST not in groups.names  # every key is in a module group
    assert [len(m) for m in groups.members] == [2, 1, 1, 1, 1]


def test_module_patterns_of_flat_names_and_of_one_tensor() -> None:
    assert module_patterns(["theta"]) == ["theta"]
    assert module_patterns(["weight", "bias"]) == ["weight", "bias"]
    # A shared prefix is never the whole of a name: each tensor under it is its own module.
    assert module_patterns(["layers.0", "layers.1"]) == ["layers.0", "layers.1"]
    with pytest.raises(LcscError, match="no keys"):
        module_patterns([])

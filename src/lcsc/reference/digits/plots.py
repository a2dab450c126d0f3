"""Plots and markdown tables of a search: the searched coefficients against the EMA profile
(as in the paper's Fig. 5), the best score against evaluations, and the Goodhart curve (the
search score against held-out scores along the best-so-far path)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from lcsc.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_coefficients(
    path: str | os.PathLike[str],
    steps: Sequence[int],
    curves: Mapping[str, np.ndarray],
    title: str = "Combination coefficients",
) -> None:
    """One line per coefficient vector (K,) against the checkpoint steps; PNG, atomic."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, a in curves.items():
        ax.plot(steps, a, label=label, lw=1.2, marker="." if len(steps) <= 60 else None)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("training iteration of the checkpoint")
    ax.set_ylabel("coefficient")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_search_curve(
    path: str | os.PathLike[str],
    scores: Sequence[float],
    references: Mapping[str, float] | None = None,
    ylabel: str = "score (search noise)",
) -> None:
    """Best score so far against evaluations, with horizontal reference lines; PNG, atomic."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    _search_axes(ax, scores, references or {}, ylabel)
    fig.tight_layout()
    _save(fig, path)


def plot_goodhart(
    path: str | os.PathLike[str],
    scores: Sequence[float],
    search_scores: Sequence[float],
    held_out: Mapping[str, Sequence[float]],
    references: Mapping[str, float] | None = None,
) -> None:
    """Two panels, PNG, atomic: the search curve (best so far against evaluations) and, next to
    it, each held-out score (``held_out``: name -> values along the path) relative to its value
    at the path's start, against the search score at those points (x inverted: the search
    proceeds to the right). A line that rises while the search score falls is Goodhart's law."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    _search_axes(left, scores, references or {}, "FD on search noise")
    x = np.asarray(search_scores, dtype=np.float64)
    for i, (label, values) in enumerate(held_out.items()):
        v = np.asarray(values, dtype=np.float64)
        right.plot(x, v / v[0], marker=".", lw=1.2, color=f"C{i}", label=label)
    right.axhline(1.0, color="grey", lw=0.6)
    right.set_xscale("log")
    right.invert_xaxis()
    right.set_xlabel("search score along the best-so-far path (FD, search noise)")
    right.set_ylabel("held-out score / its value at the EMA* level")
    right.set_title("Goodhart curve: lower is better on both axes")
    right.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def _search_axes(ax, scores: Sequence[float], references: Mapping[str, float], ylabel: str) -> None:
    s = np.asarray(scores, dtype=np.float64)
    best = np.fmin.accumulate(np.where(np.isfinite(s), s, np.inf))
    ax.plot(np.arange(1, len(s) + 1), best, label="LCSC best so far", color="C0")
    for i, (label, value) in enumerate(references.items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 1}", label=label)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend()


Cell = float | str | tuple[float, float]


def markdown_table(
    rows: Mapping[str, Mapping[str, Cell]], columns: Sequence[str], first: str = "model"
) -> str:
    """Rows of named numbers as a markdown table (4 significant digits); a ``(mean, std)``
    pair is shown as ``mean ± std``, a string as it is."""
    head = f"| {first} | " + " | ".join(columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    lines = [head, rule]
    for name, values in rows.items():
        cells = " | ".join(_cell(values[c]) if c in values else "" for c in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def _cell(value: Cell) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return f"{value[0]:.4g} ± {value[1]:.2g}"
    return f"{value:.4g}"


def _save(fig, path: str | os.PathLike[str]) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

"""Plots and a markdown report of a search: the searched coefficients against the EMA profile
(as in the paper's Fig. 5), and the best score against evaluations."""

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
    s = np.asarray(scores, dtype=np.float64)
    best = np.fmin.accumulate(np.where(np.isfinite(s), s, np.inf))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.arange(1, len(s) + 1), best, label="LCSC best so far", color="C0")
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 1}", label=label)
    ax.set_xlabel("evaluations")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def markdown_table(rows: Mapping[str, Mapping[str, float]], columns: Sequence[str]) -> str:
    """Rows of named numbers as a markdown table (4 significant digits)."""
    head = "| model | " + " | ".join(columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    lines = [head, rule]
    for name, values in rows.items():
        cells = " | ".join(f"{values[c]:.4g}" if c in values else "" for c in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def _save(fig, path: str | os.PathLike[str]) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

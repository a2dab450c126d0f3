"""Shared by the CLI tests: the objective file that ``lcsc search --objective FILE:make`` loads."""

from __future__ import annotations

# ``make(target)`` scores a state dict by its squared distance to ``target`` in every float;
# OBJECTIVE_DELAY_S (seconds per score) slows it down, so a child process can be killed mid-search.
OBJECTIVE = """
import os
import time

def make(target="0.0"):
    t, pause = float(target), float(os.environ.get("OBJECTIVE_DELAY_S", "0"))
    def objective(sd):
        time.sleep(pause)
        return float(sum((v.double() - t).pow(2).sum() for v in sd.values() if v.is_floating_point()))
    return objective
"""

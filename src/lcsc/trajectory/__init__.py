"""Trajectories of saved checkpoints: recording, opening, validating and combining them."""

from lcsc.trajectory.recorder import Recorder
from lcsc.trajectory.trajectory import Trajectory

__all__ = ["Recorder", "Trajectory"]

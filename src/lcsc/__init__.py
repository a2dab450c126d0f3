"""lcsc: Linear Combination of Saved Checkpoints."""

__version__ = "0.1.0"

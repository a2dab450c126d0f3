"""User-facing errors: the CLI prints these as one line, without a traceback."""


class LcscError(Exception):
    """Base class for errors caused by the user's input (files, arguments, objectives)."""


class CheckpointError(LcscError):
    """A checkpoint file is unreadable, unsafe, corrupt or holds bad values."""


class TrajectoryError(LcscError):
    """Checkpoints do not form a valid trajectory (mismatched keys, shapes, dtypes, ...)."""


class SearchError(LcscError):
    """A coefficient search cannot start, resume or continue."""


class WriteError(LcscError):
    """An output cannot be written (read-only or full disk, a folder in the way, an input)."""

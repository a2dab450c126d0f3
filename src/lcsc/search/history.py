"""On-disk state of a search: ``search.json`` (what is searched) + ``history.jsonl``.

``search.json`` is written atomically once; ``history.jsonl`` gets one JSON line per
completed evaluation, written with a single ``write`` so that ``kill -9`` leaves at
worst a torn final line, which is dropped on resume. No fsync per line: we survive a
killed process, not a power loss, and keep the overhead per evaluation tiny.

Resuming does not unpickle any optimizer state: the runner rebuilds the optimizer from
its seed and replays the recorded scores (floats round-trip exactly through JSON,
whose encoder uses ``repr``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from lcsc import atomic
from lcsc.errors import SearchError
from lcsc.search.results import Validated

try:  # advisory lock against two processes writing one workdir; POSIX only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT = "lcsc-search"
FORMAT_VERSION = 1
SEARCH_FILE = "search.json"
HISTORY_FILE = "history.jsonl"
FAILED_FILE = "failed_candidate.json"
HEADER_FIELDS = ("format", "format_version", "method", "config", "seed", "K", "init", "identity")


@dataclasses.dataclass(frozen=True)
class Record:
    """One completed evaluation as stored; ``score`` is NaN when it was not finite."""

    index: int
    coefficients: npt.NDArray[np.float64]
    score: float
    wall_time_s: float
    validation: Validated | None = None  # the validation made right after it, if any


def make_header(
    method: str,
    config: dict[str, Any],
    seed: int,
    init: npt.NDArray[np.float64],
    identity: dict[str, Any],
) -> dict[str, Any]:
    """Content of ``search.json``, normalised by a JSON round trip (tuples -> lists)."""
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "config": config,
        "seed": seed,
        "K": int(init.shape[1]),
        "init": init.tolist(),
        "identity": identity,
    }
    try:
        return json.loads(json.dumps(header, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SearchError(f"identity must be JSON-serialisable with finite numbers: {exc}") from exc


def first_difference(old: Any, new: Any, name: str) -> str | None:
    """Dotted name of the first field where ``old`` and ``new`` differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key not in old or key not in new:
                return f"{name}.{key}"
            found = first_difference(old[key], new[key], f"{name}.{key}")
            if found:
                return found
        return None
    return None if old == new else name


def _both_values(old: dict[str, Any], new: dict[str, Any], dotted: str) -> str:
    """``": recorded X, now Y"`` for the field ``dotted``, when both are short to print."""
    values = []
    for obj in (old, new):
        for name in dotted.split("."):
            obj = obj.get(name, "(none)") if isinstance(obj, dict) else "(none)"
        values.append(json.dumps(obj))
    if max(map(len, values)) > 120:
        return ""
    return f": recorded {values[0]}, now {values[1]}"


class History:
    """The files of one search in ``workdir``; use :meth:`open` then :meth:`append`."""

    def __init__(self, workdir: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self.workdir = Path(workdir)
        self.header = header
        self.k = header["K"]
        self._file: IO[bytes] | None = None

    @property
    def history_path(self) -> Path:
        return self.workdir / HISTORY_FILE

    def open(self) -> list[Record]:
        """Create or verify ``search.json``; return the recorded evaluations.

        Takes the workdir's lock and truncates a torn final line away.
        """
        if self.workdir.exists() and not self.workdir.is_dir():
            raise SearchError(f"workdir {self.workdir}: is a file, not a folder")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.history_path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise SearchError(f"workdir {self.workdir}: cannot write there: {exc}") from exc
        try:
            self._lock()
            self._check_header()
            return self._read_records()
        except BaseException as exc:
            self.close()
            if isinstance(exc, OSError):
                raise SearchError(f"workdir {self.workdir}: {exc}") from exc
            raise

    def append(
        self,
        index: int,
        coefficients: npt.NDArray[np.float64],
        score: float,
        wall_time_s: float,
        validation: Validated | None = None,
    ) -> None:
        """Append one evaluation as a single line, in one write (atomic w.r.t. kill -9)."""
        assert self._file is not None, "History.open() first"
        record: dict[str, Any] = {
            "index": index,
            "coefficients": coefficients.tolist(),
            "score": score if math.isfinite(score) else None,
            "wall_time_s": wall_time_s,
        }
        if validation is not None:  # same line as the evaluation: both or neither survive
            record["validation"] = {
                "index": validation.index,
                "score": validation.score if math.isfinite(validation.score) else None,
                "wall_time_s": validation.wall_time_s,
            }
        data = (json.dumps(record, allow_nan=False) + "\n").encode()
        try:
            written = self._file.write(data)
            while written < len(data):  # a regular file takes it all at once; be safe anyway
                written += self._file.write(data[written:])
        except OSError as exc:  # a torn line at worst, dropped on resume
            raise SearchError(
                f"{self.history_path}: cannot append evaluation {index}: {exc}"
            ) from exc

    def save_failed(self, index: int, coefficients: npt.NDArray[np.float64], error: str) -> Path:
        path = self.workdir / FAILED_FILE
        atomic.write_json(
            path, {"index": index, "coefficients": coefficients.tolist(), "error": error}
        )
        return path

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # also releases the lock
            self._file = None

    def _lock(self) -> None:
        assert self._file is not None
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchError(
                f"{self.workdir} is in use by another running search; wait for it or "
                "choose another workdir"
            ) from None

    def _check_header(self) -> None:
        path = self.workdir / SEARCH_FILE
        if not path.exists():
            if self.history_path.stat().st_size > 0:
                raise SearchError(
                    f"{self.workdir} holds {HISTORY_FILE} but no {SEARCH_FILE}; "
                    "choose another workdir"
                )
            atomic.write_json(path, self.header)
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SearchError(f"cannot read {path}: {exc}; choose another workdir") from exc
        if not isinstance(old, dict):
            raise SearchError(f"{path} is not a search description; choose another workdir")
        for field in HEADER_FIELDS:
            diff = first_difference(old.get(field), self.header[field], field)
            if diff is not None:
                raise SearchError(
                    f"{self.workdir} holds a different search ({diff} differs from this "
                    f"call's{_both_values(old, self.header, diff)}); choose another workdir, "
                    "or repeat the original arguments to resume it"
                )

    def _read_records(self) -> list[Record]:
        data = self.history_path.read_bytes()
        lines = data.split(b"\n")
        # After the last "\n" comes either nothing or a torn line; a last complete line
        # that does not parse is torn too (written partially, then the process died).
        complete, torn = lines[:-1], lines[-1]
        records: list[Record] = []
        good_bytes = 0
        for n, line in enumerate(complete):
            try:
                raw = json.loads(line)
            except ValueError:
                if n == len(complete) - 1:
                    torn = line + b"\n" + torn
                    break
                raise SearchError(
                    f"{self.history_path}:{n + 1} is not valid JSON; the history is "
                    "corrupt, choose another workdir"
                ) from None
            records.append(self._parse(raw, n))
            good_bytes += len(line) + 1
        if torn:
            log.warning(
                "%s: dropping a torn last line (%d bytes) left by an interrupted run",
                self.history_path,
                len(torn),
            )
            os.truncate(self.history_path, good_bytes)
        return records

    def _parse(self, raw: Any, n: int) -> Record:
        try:
            index = raw["index"]
            coefficients = np.array(raw["coefficients"], dtype=np.float64)
            score = math.nan if raw["score"] is None else float(raw["score"])
            wall = float(raw["wall_time_s"])
            validation = _parse_validation(raw.get("validation"))
            ok = index == n and coefficients.shape == (self.k,)
            ok = ok and (validation is None or 0 <= validation.index <= n)
        except (TypeError, KeyError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise SearchError(
                f"{self.history_path}:{n + 1} is not record {n} of a K={self.k} search; "
                "the history is corrupt, choose another workdir"
            )
        return Record(index, coefficients, score, wall, validation)


def _parse_validation(raw: Any) -> Validated | None:
    if raw is None:
        return None
    score = math.nan if raw["score"] is None else float(raw["score"])
    index = raw["index"]
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError("validation index must be an integer")
    return Validated(index, score, float(raw["wall_time_s"]))

"""Atomic file writes: a temporary file in the target's folder, fsynced, then renamed.

No partial file is ever visible under the final name, even after ``kill -9``. A writer holds an
exclusive ``flock`` on its temporary file until the rename, so :func:`remove_stale` can tell
the leftovers of killed writers (unlocked) from the files of live ones (locked). OS errors
(read-only folder, full disk, a folder in the way) become one :class:`WriteError` naming the
target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lcsc.errors import WriteError

try:  # POSIX; without it temporary files are never judged stale
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched; an
    ``OSError`` (also one raised while the caller writes the temporary file) becomes a
    :class:`WriteError` naming ``path``.
    """
    target = Path(path)
    if target.is_dir():
        raise WriteError(f"{target}: is a directory; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    tmp_path = Path(tmp)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours alone: a new file; marks it as live
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError):
            raise _write_error(target, exc) from exc
        raise
    finally:
        os.close(fd)  # releases the lock


def _write_error(target: Path, exc: OSError) -> WriteError:
    reason = f"{exc.strerror} [Errno {exc.errno}]" if exc.strerror else str(exc)
    return WriteError(f"{target}: cannot write: {reason}")


def remove_stale(directory: str | os.PathLike[str], names: tuple[str, ...]) -> int:
    """Remove the temporary files of killed writers of the ``names...`` files in ``directory``.

    ``names`` are prefixes of the final file names (``"step-"``). A temporary file whose
    writer is alive is locked and kept. Returns the number of files removed.
    """
    if fcntl is None:  # pragma: no cover
        return 0
    removed = 0
    for path in Path(directory).iterdir():
        if not path.name.startswith(tuple(TMP_PREFIX + n for n in names)):
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except (FileNotFoundError, IsADirectoryError):  # renamed meanwhile, or not ours
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:  # still the file we locked
                path.unlink()
                removed += 1
        except (BlockingIOError, FileNotFoundError):  # a live writer, or it just finished
            pass
        finally:
            os.close(fd)
    return removed


def check_not_input(
    path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], what: str
) -> None:
    """Refuse to write ``path`` when it is one of ``inputs`` (the same file, by any name)."""
    target = Path(path)
    if not target.exists():
        return
    for p in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(target, p):
                raise WriteError(f"{target}: is {what}; refusing to overwrite an input")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")

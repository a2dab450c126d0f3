"""How many torch threads lcsc uses: a default that does not collapse on shared machines.

torch's default (one intra-op thread per core) collapses when another process runs: OpenMP
threads spin at barriers waiting for a thread that is not scheduled, and one ``combine()`` of
the demo's trajectory took 3.2 s instead of 13 ms on 2 shared cores (``benchmarks/threads.py``,
docs/benchmarks.md). The policy here: ``OMP_NUM_THREADS`` when the user set it, else half the
CPUs this process may run on (1 on a 2-core machine), leaving room for a neighbour. The CLI also
asks OpenMP to sleep rather than spin at barriers (``OMP_WAIT_POLICY=PASSIVE``), which OpenMP
reads once, when torch loads it: :func:`prepare_environment` must run before ``import torch``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from lcsc.errors import LcscError

ENV_THREADS = "OMP_NUM_THREADS"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """``OMP_NUM_THREADS`` if set to a positive integer, else ``max(1, available CPUs // 2)``."""
    raw = os.environ.get(ENV_THREADS, "").strip()
    if raw:
        try:
            return check_threads(int(raw), ENV_THREADS)
        except ValueError:
            raise LcscError(f"{ENV_THREADS} must be a positive integer; got {raw!r}") from None
    return max(1, available_cpus() // 2)


def check_threads(threads: int, name: str = "threads") -> int:
    """``threads`` if it is an integer >= 1, else one clear :class:`LcscError`."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise LcscError(f"{name} must be an integer >= 1; got {threads!r}")
    return threads


def prepare_environment() -> None:
    """Before torch and numpy load: OpenMP threads sleep at barriers (unless the user chose a
    wait policy), and OpenMP/BLAS start with :func:`default_threads` threads (unless
    ``OMP_NUM_THREADS`` is set), so numpy's BLAS follows the policy too. The CLI calls it
    first thing; later it has no effect on libraries already loaded."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault(ENV_THREADS, str(default_threads()))


@contextlib.contextmanager
def using(threads: int | None, name: str = "threads") -> Iterator[int]:
    """Run a block with ``threads`` torch threads (``None``: :func:`default_threads`), also
    exported as ``OMP_NUM_THREADS`` to child processes; both are restored afterwards.
    ``name`` is the option named in the error for a bad count."""
    import torch

    n = default_threads() if threads is None else check_threads(threads, name)
    previous, previous_env = torch.get_num_threads(), os.environ.get(ENV_THREADS)
    torch.set_num_threads(n)
    os.environ[ENV_THREADS] = str(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
        if previous_env is None:
            os.environ.pop(ENV_THREADS, None)
        else:
            os.environ[ENV_THREADS] = previous_env

"""The kernel thread count, process-wide: the one check of a requested count, shared by
:func:`gemma_native.set_num_threads` and ``load(n_threads=...)``."""

from __future__ import annotations

import warnings

import numpy as np

from . import _core
from .errors import InvalidArgumentError

MAX_THREADS = 1024


def set_threads(n, what: str) -> None:
    """Sets the kernel threads to n (None or 0: the default, the usable CPUs); ``what`` names
    the argument in the error."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                          or not 0 <= n <= MAX_THREADS):
        raise InvalidArgumentError(f"{what} must be an integer in [0, {MAX_THREADS}] "
                                   f"(0: the default), got {n!r}")
    n = 0 if n is None else int(n)
    usable = _core.backend_info()["cpus"]["usable"]
    if n > usable:
        warnings.warn(f"gemma_native: {n} threads on {usable} usable CPU(s) oversubscribes them "
                      f"(slower, not faster); set_num_threads(None) picks {usable}",
                      RuntimeWarning, stacklevel=3)
    _core.set_num_threads(n)

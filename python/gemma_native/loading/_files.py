"""Opening a weight file for memory-mapping, shared by the safetensors and GGUF readers."""

from __future__ import annotations

import os
import stat
from typing import Callable

from ..errors import ModelFormatError, ModelNotFoundError


def open_regular_file(fname: str, kind: str, fail: Callable[[str, str], ModelFormatError]):
    """(open binary file, size) of a regular file; ModelNotFoundError if it does not exist,
    ``fail(fname, why)`` (the reader's own error) if it is a directory or a special file."""
    try:
        f = open(fname, "rb")  # noqa: SIM115 -- closed by the caller
    except FileNotFoundError:
        raise ModelNotFoundError(f"{kind} file not found: {fname}") from None
    except IsADirectoryError:
        raise fail(fname, "is a directory, not a file") from None
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise fail(fname, "is not a regular file")
    except BaseException:
        f.close()
        raise
    return f, st.st_size

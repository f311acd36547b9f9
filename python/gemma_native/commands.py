"""How the package's commands (``gemma-native ...`` and ``python -m gemma_native.bench``) end:
the exit code of a command function, with the package's errors, Ctrl-C and a closed pipe turned
into a one-line message and an exit status instead of a traceback."""

from __future__ import annotations

import os
import sys

from .errors import GemmaNativeError


def run_command(fn, args) -> int:
    """fn(args)'s exit code; 1 on a GemmaNativeError (printed), 130 on Ctrl-C, 0 when stdout
    was closed early (e.g. piped into ``head``)."""
    try:
        return fn(args)
    except GemmaNativeError as e:
        print(f"gemma-native: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0

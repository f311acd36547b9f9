"""``python -m gemma_native.bench``: see the package docstring, or run it with --help."""

import sys

from gemma_native.bench import main

sys.exit(main())

"""``python -m gemma_native ...``: the gemma-native command."""

import sys

from .cli import main

sys.exit(main())

"""The test suite of gemma_native (see tests/README.md).

This file makes ``tests`` a package: pytest then puts the repository root on ``sys.path`` (its
default "prepend" import mode) so that test modules import their helpers as
``from tests.helpers import tinyckpt``, while ``gemma_native`` itself always comes from the
installed package.
"""

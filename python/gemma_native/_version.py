"""The package version, in one place.

The build reads it from here too: pyproject.toml declares the version dynamic and
scikit-build-core's regex metadata provider parses the assignment below, so a wheel's metadata
and ``gemma_native.__version__`` can never disagree.  Keep it a plain string literal.
"""

__version__ = "0.4.0"

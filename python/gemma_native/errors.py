"""Exception hierarchy of gemma_native.

Every error the package raises on purpose derives from :class:`GemmaNativeError`, so an
application can catch one class.  The subclasses also derive from the matching built-in
(``ValueError``, ``FileNotFoundError`` ...) so generic handlers keep working.
"""

from __future__ import annotations


class GemmaNativeError(Exception):
    """Base class of every gemma_native error."""


class ModelFormatError(GemmaNativeError, ValueError):
    """A model file or folder is corrupt, truncated, or inconsistent with its config."""


class ModelNotFoundError(GemmaNativeError, FileNotFoundError):
    """A model path, or a file a model folder needs, does not exist."""


class UnsupportedModelError(GemmaNativeError, ValueError):
    """The model architecture, tensor dtype or quantisation is not supported."""


class ShapeError(GemmaNativeError, ValueError):
    """An array has the wrong shape."""


class DTypeError(GemmaNativeError, TypeError):
    """An array has the wrong or an unsupported dtype."""


class InvalidArgumentError(GemmaNativeError, ValueError):
    """A bad argument: token id outside the vocabulary, empty prompt, absurd sampling value."""


class DeviceError(GemmaNativeError, RuntimeError):
    """The requested device (e.g. a CUDA GPU) or CPU instruction set is not available."""


class TokenizerError(GemmaNativeError, RuntimeError):
    """Text was requested but the model has no tokenizer, or the tokenizer failed."""


__all__ = [
    "GemmaNativeError",
    "ModelFormatError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "ShapeError",
    "DTypeError",
    "InvalidArgumentError",
    "DeviceError",
    "TokenizerError",
]

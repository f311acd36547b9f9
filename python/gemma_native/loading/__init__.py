"""Reading model checkpoints: safetensors files and Hugging Face model folders.

The submodules use only the standard library and numpy:

* :mod:`gemma_native.loading.safetensors` -- a strict, memory-mapping safetensors reader
  (:func:`read_safetensors`) and a small writer (:func:`write_safetensors`);
* :mod:`gemma_native.loading.hf` -- :func:`load_hf_folder`, which finds ``config.json``,
  the weights (single file, sharded with an index, or loose ``*.safetensors``) and the
  tokenizer of a Hugging Face checkpoint folder.
"""

from __future__ import annotations

from .hf import HFCheckpoint, load_hf_folder
from .safetensors import (
    Tensor,
    read_safetensors,
    read_safetensors_metadata,
    read_safetensors_with_metadata,
    write_safetensors,
)

__all__ = [
    "HFCheckpoint",
    "Tensor",
    "load_hf_folder",
    "read_safetensors",
    "read_safetensors_metadata",
    "read_safetensors_with_metadata",
    "write_safetensors",
]

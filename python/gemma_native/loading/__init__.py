"""Reading model checkpoints: safetensors files, Hugging Face model folders and GGUF files.

The submodules use only the standard library and numpy:

* :mod:`gemma_native.loading.safetensors` -- a strict, memory-mapping safetensors reader
  (:func:`read_safetensors`) and a small writer (:func:`write_safetensors`);
* :mod:`gemma_native.loading.hf` -- :func:`load_hf_folder`, which finds ``config.json``,
  the weights (single file, sharded with an index, or loose ``*.safetensors``) and the
  tokenizer of a Hugging Face checkpoint folder;
* :mod:`gemma_native.loading.gguf` -- a strict, memory-mapping GGUF reader (``read_gguf``);
* :mod:`gemma_native.loading.ggml` -- the table of GGML tensor types (ids, block layouts,
  which ones the engine runs natively) and numpy dequantizers.

Which tensors a model needs and how they reach the engine is :mod:`gemma_native.models`'s
business.
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

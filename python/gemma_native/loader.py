"""gemma_native.load(): from a path to a ready Model."""

from __future__ import annotations

import os

import numpy as np

from . import _core
from ._dtypes import (CODE_NAMES, canonical_dtype, check_pack_weights, cpu_layout,
                      drop_converted_sources)
from .errors import InvalidArgumentError, UnsupportedModelError
from .loading.hf import load_hf_folder
from .loading.hub import resolve
from .model import Model
from .models import for_gguf, for_hf_config
from .templates import template_from_gguf, template_from_hf_folder
from .tokenizer import Tokenizer
from ._threads import set_threads
from ._modes import check_activations, core_options
from .device import check_device


def load(path, dtype: str | None = None, n_threads: int | None = None,
         activations: str = "int8", device: str = "cpu", mmap: bool = True,
         revision: str | None = None, pack_weights: bool | None = None) -> Model:
    """Loads a model.

    path: a Hugging Face folder (config.json, model.safetensors or shards with
    model.safetensors.index.json, optional tokenizer.model) of RecurrentGemma or a Gemma 1/2/3
    text model, a .safetensors file with a config.json beside it, or a .gguf file.  Also a
    Hugging Face cache folder (``.../models--ORG--NAME``: the snapshot of ``refs/main``), or a
    Hub id, ``"ORG/NAME"`` or ``"ORG/NAME/FILE.gguf"``, fetched into the Hugging Face cache
    (needs the ``hub`` extra; with ``HF_HUB_OFFLINE=1`` only the cache is used).
    revision: with a Hub id or cache folder: a branch, tag or commit (default: main).
    dtype: weight dtype for the large matrices: None keeps the file's dtype (memory-mapped, no
    copy), or "float32" / "bfloat16" / "float16" (converted at load), or "int8" (quantized at
    load to 8-bit blocks of 32 with one scale each: GGML's Q8_0; on the CPU with int8
    activations the linear matrices are then laid out 16 rows interleaved, "Q8_0R16", and
    summed a whole block at a time in integers, about twice llama.cpp's Q8_0 arithmetic's
    prefill speed where the CPU has AVX512-VNNI).
    activations: the compute mode. For *quantized* weights (GGUF blocks or dtype="int8"): "int8"
    (default) quantizes each activation row to 8 bits per block and multiplies exactly in
    integers, as llama.cpp does for GGUF files (fastest; llama.cpp's numerics, including its
    float16-table GELU; dtype="int8" uses its own Q8_0R16 summation order); "float32" widens the
    weights and multiplies with float32 activations (the dequantized model's math, slower). Float
    weights meet float32 activations (exact, bit-identical on every CPU) unless
    activations="bfloat16": prefill then rounds activations and weights to bfloat16 and runs on
    the CPU's matrix unit (AMX), several times faster, with the accuracy of a bfloat16 model
    (exact where the CPU has no AMX). ``model.compute_mode`` says what runs.
    n_threads: kernel threads (process-wide); None keeps the current setting.
    device: "cpu" (default); "cuda" / "cuda:N" (builds with the CUDA backend; float weights --
    quantized ones raise DeviceError); "cuda-emu": the CUDA path -- weights copied into backend
    memory, the CUDA kernels, decode steps replayed as a graph -- on the CPU's SIMT emulator
    (very slow; for checking the device path on machines without a GPU).
    mmap: True (default) uses the weights in place in a read-only memory map of the file: no
    copy, pages read on demand and shared with other processes.  The file must then stay as it
    is while the model lives: truncating it (``cp new.gguf model.gguf``) makes the next read of
    a lost page kill the process with SIGBUS, and overwriting it in place changes the weights
    under the model.  Replace model files with a rename (``mv``), which leaves the mapped file
    intact, or load with mmap=False, which reads every weight into memory first (the file can
    then change freely; costs the weights' size in RAM and the time to read them).
    pack_weights: lay the bfloat16 linear matrices of a Hugging Face folder out for the CPU
    kernels at load, as "BF16R32" (32-row panels in the kernels' summation order: same values,
    the same results bit for bit, and no repacking per call; on the 2B shape about 10% faster
    exact prefill, and up to 1.5x faster decode steps of several rows).  None (default): where
    the CPU kernel set in use is an AVX-512 one (the AVX2 kernels are no faster on it); True:
    always; False: never.  Packing is a copy in memory, so those matrices are then not
    memory-mapped (the small tensors still are); False keeps them in
    the file's layout, mapped and shared between processes.  No effect on other dtypes, GGUF
    files or CUDA devices.
    """
    device = check_device(device)
    if not isinstance(mmap, (bool,)):
        raise InvalidArgumentError(f"mmap must be True or False, got {mmap!r}")
    check_pack_weights(pack_weights)
    apply_n_threads(n_threads)
    want = canonical_dtype(dtype) if dtype is not None else None
    check_activations(activations)
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not p or "\0" in p:
        raise InvalidArgumentError(f"not a usable model path: {p!r}")
    p = resolve(p, revision)
    if p.lower().endswith(".gguf"):
        return _load_gguf(p, want, activations, mmap, device)
    ckpt = load_hf_folder(p)
    arch = for_hf_config(ckpt.config)
    emb = ckpt.tensors.get("model.embed_tokens.weight")
    cfg = arch.parse_hf_config(ckpt.config, emb.dtype if emb is not None else "float32")
    weights = cpu_layout(arch.hf_weights(cfg, ckpt.tensors, want), activations, device,
                         pack_weights)
    weights = _in_memory(weights, mmap)
    drop_converted_sources([t.data for t in ckpt.tensors.values()], weights)
    core = arch.build_core(cfg, weights, device, **core_options(activations, weights))
    tok = Tokenizer.from_file(ckpt.tokenizer_path) if ckpt.tokenizer_path else None
    if tok is not None and tok.vocab_size > cfg.vocab_size:
        raise UnsupportedModelError(
            f"tokenizer has {tok.vocab_size} pieces but the model only {cfg.vocab_size} rows")
    wd = want or sorted({ckpt.tensors["model.embed_tokens.weight"].dtype})[0]
    model = Model(cfg, core, tok, path=ckpt.path, weight_dtype=wd, activations=activations)
    folder = ckpt.path if os.path.isdir(ckpt.path) else os.path.dirname(ckpt.path)
    model.chat_template = template_from_hf_folder(folder)
    return finish_load(model, weights)


def apply_n_threads(n_threads) -> None:
    """The n_threads argument of load() (and of random_model.model_from_spec): the kernel
    threads, process-wide; None keeps the setting, 0 restores the default (the usable CPUs)."""
    if n_threads is not None:
        set_threads(n_threads, "n_threads")


def finish_load(model: Model, weights: dict) -> Model:
    """The last step of every loader (folder, GGUF, random): records the weights' size and
    layouts on the model, then hands the heap pages freed during loading back to the system.
    Converting weights at load (quantizing to int8, packing) allocates and frees buffers of up
    to tens of MB, which glibc keeps in the process heap: a random int8 2B (2.74 GiB of
    weights) was resident at 4.7 GiB after loading, 2.7 GiB after the trim."""
    model.weights_nbytes = sum(a.nbytes for a, _ in weights.values())
    model.weight_layouts = sorted({CODE_NAMES[code] for _, code in weights.values()})
    _core.trim_heap()
    return model


def _in_memory(weights: dict, use_mmap: bool) -> dict:
    """With mmap=False: every weight that is a view of a file mapping becomes a copy in memory
    (arrays converted at load are in memory already), so nothing refers to the file after
    loading."""
    if use_mmap:
        return weights
    return {name: (arr if arr.base is None else np.array(arr, order="C"), code)
            for name, (arr, code) in weights.items()}


def _load_gguf(path: str, want: str | None, activations: str, use_mmap: bool,
               device: str) -> Model:
    from .gguf_tokenizer import tokenizer_from_gguf
    from .loading.gguf import read_gguf

    gf = read_gguf(path)
    arch = for_gguf(gf)
    cfg = arch.gguf_config(gf)
    weights = _in_memory(arch.gguf_weights(cfg, gf, want), use_mmap)
    drop_converted_sources([t.raw for t in gf.tensors.values()], weights)
    # activations="int8" is llama.cpp's arithmetic: its float16-table GELU too (which takes
    # teacher-forced top-1 agreement with llama.cpp on the 270M from 94.5% to 97.4%).
    core = arch.build_core(cfg, weights, device, **core_options(activations, weights),
                           gelu_f16_table=activations == "int8")
    tok = None
    if "tokenizer.ggml.tokens" in gf.metadata:
        tok = tokenizer_from_gguf(gf.metadata, getattr(cfg, "bos_token_id", None),
                                  getattr(cfg, "eos_token_id", None))
        if tok.vocab_size > cfg.vocab_size:
            raise UnsupportedModelError(f"{path}: tokenizer has {tok.vocab_size} pieces but the "
                                        f"model only {cfg.vocab_size} rows")
    dtypes = sorted({CODE_NAMES[code] for _, code in weights.values()})
    model = Model(cfg, core, tok, path=os.path.abspath(path), weight_dtype="/".join(dtypes),
                  activations=activations)
    model.file_types = sorted({t.ggml_type for t in gf.tensors.values()})
    model.chat_template = template_from_gguf(gf.metadata)
    return finish_load(model, weights)

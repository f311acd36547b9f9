"""gemma_native.load(): from a path to a ready Model."""

from __future__ import annotations

import os

from . import _core
from ._dtypes import DTYPE_CODES, canonical_dtype
from .errors import InvalidArgumentError, ModelNotFoundError, UnsupportedModelError
from .loading.hf import load_hf_folder
from .model import Model
from .models import gemma, griffin
from .tokenizer import Tokenizer
from .device import check_device, require_cpu


def load(path, dtype: str | None = None, n_threads: int | None = None,
         activations: str = "int8", device: str = "cpu") -> Model:
    """Loads a model.

    path: a Hugging Face folder (config.json, model.safetensors or shards with
    model.safetensors.index.json, optional tokenizer.model) of RecurrentGemma or a Gemma 1/2/3
    text model, or a .safetensors file with a config.json beside it.
    dtype: weight dtype for the large matrices: None keeps the file's dtype (memory-mapped, no
    copy), or "float32" / "bfloat16" / "float16" (converted at load), or "int8" (quantized at
    load to 8-bit blocks of 32 with one scale each: GGML's Q8_0).
    activations: how activations meet *quantized* weights (GGUF blocks or dtype="int8"):
    "int8" (default) quantizes each activation row to 8 bits per block and multiplies exactly in
    integers, as llama.cpp does (fastest; llama.cpp's numerics); "float32" widens the weights and
    multiplies with float32 activations (the dequantized model's math, slower).  Float weights
    always meet float32 activations.
    n_threads: kernel threads (process-wide); None keeps the current setting.
    device: "cpu" (default); "cuda" / "cuda:N" (builds with the CUDA backend, RecurrentGemma
    only; otherwise DeviceError); "cuda-emu": the CUDA path -- weights copied into backend
    memory, the CUDA kernels, decode steps replayed as a graph -- on the CPU's SIMT emulator
    (very slow; for checking the device path on machines without a GPU).
    """
    device = check_device(device)
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 0:
            raise InvalidArgumentError(f"n_threads must be an integer >= 0, got {n_threads!r}")
        _core.set_num_threads(n_threads)  # 0: the default (physical cores)
    want = canonical_dtype(dtype) if dtype is not None else None
    if activations not in ("int8", "float32"):
        raise InvalidArgumentError(f"activations must be 'int8' or 'float32', got {activations!r}")
    float_act = activations == "float32"
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ModelNotFoundError(f"no such model path: {p}")
    if p.lower().endswith(".gguf"):
        require_cpu(device, "GGUF models")
        return _load_gguf(p, want, float_act)
    ckpt = load_hf_folder(p)
    mt = ckpt.config.get("model_type")
    if isinstance(mt, str) and (mt in gemma.MODEL_TYPES or mt == "gemma3"):
        emb = ckpt.tensors.get("model.embed_tokens.weight")
        cfg = gemma.parse_config(ckpt.config, emb.dtype if emb is not None else "float32")
        require_cpu(device, "Gemma models")
        weights = gemma.engine_weights(cfg, ckpt.tensors, want)
        core = _core.GemmaModel({**cfg.engine_dict(), "float_activations": float_act}, weights)
    else:
        cfg = griffin.parse_config(ckpt.config)
        weights = griffin.engine_weights(cfg, ckpt.tensors, want)
        core = _core.GriffinModel({**cfg.engine_dict(), "float_activations": float_act},
                                  weights, device)
    tok = Tokenizer.from_file(ckpt.tokenizer_path) if ckpt.tokenizer_path else None
    if tok is not None and tok.vocab_size > cfg.vocab_size:
        raise UnsupportedModelError(
            f"tokenizer has {tok.vocab_size} pieces but the model only {cfg.vocab_size} rows")
    wd = want or sorted({ckpt.tensors["model.embed_tokens.weight"].dtype})[0]
    model = Model(cfg, core, tok, path=ckpt.path, weight_dtype=wd)
    model.weights_nbytes = sum(a.nbytes for a, _ in weights.values())
    return model


def _load_gguf(path: str, want: str | None, float_act: bool = False) -> Model:
    from .gguf_tokenizer import tokenizer_from_gguf
    from .loading.gguf import read_gguf
    from .models import gemma_gguf

    gf = read_gguf(path)
    cfg, weights = gemma_gguf.load_gguf_model(gf, want)
    core = _core.GemmaModel({**cfg.engine_dict(), "float_activations": float_act}, weights)
    tok = None
    if "tokenizer.ggml.tokens" in gf.metadata:
        tok = tokenizer_from_gguf(gf.metadata)
        if tok.vocab_size > cfg.vocab_size:
            raise UnsupportedModelError(f"{path}: tokenizer has {tok.vocab_size} pieces but the "
                                        f"model only {cfg.vocab_size} rows")
    names = {**{v: k for k, v in DTYPE_CODES.items()}, **{v: k for k, v in
                                                          gemma_gguf.NATIVE_QUANT.items()}}
    dtypes = sorted({names[code] for _, code in weights.values()})
    model = Model(cfg, core, tok, path=os.path.abspath(path), weight_dtype="/".join(dtypes))
    model.weights_nbytes = sum(a.nbytes for a, _ in weights.values())
    model.file_types = sorted({t.ggml_type for t in gf.tensors.values()})
    return model

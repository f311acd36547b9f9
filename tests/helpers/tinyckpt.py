"""Tiny random RecurrentGemma checkpoints written without torch.

:func:`write_tiny_checkpoint` writes a Hugging Face style folder (``config.json`` +
``model.safetensors``, optionally ``tokenizer.model``) holding seeded random weights named and
shaped as in docs/model-math.md, 'Checkpoint tensor names'.  It needs only numpy (plus
sentencepiece when ``tokenizer=True``), so the bad-input and CLI tests run where torch is not
installed.

The lower-level pieces are public too, so a test can break one thing on purpose:
:func:`small_config` (the neutral config dict of ``refmodels.tiny_config``, but smaller),
:func:`config_json` (the ``config.json`` dict), :func:`hf_tensors` (name -> float32 array) and
:func:`write_folder` (write a given config dict / tensors).

This is a helper module, not a test file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile

import numpy as np

from gemma_native._dtypes import f32_to_bf16_bits
from gemma_native.loading.safetensors import write_safetensors

from . import refmodels

BLOCK_PATTERN = ("recurrent", "recurrent", "attention")

# vocab_size of the default config: exactly the tiny SentencePiece model's vocabulary (400
# pieces).  load() rejects a tokenizer larger than the embedding, and a smaller one lets the
# model sample ids the tokenizer cannot decode (see test_bad_input.py).
DEFAULT_VOCAB = 400


def small_config(**overrides) -> dict:
    """A small neutral config (same keys as ``refmodels.tiny_config``): 3 layers R R A, width
    32, 2 heads of 16, lru_width 48 (not equal to width), window 4, vocab 400."""
    cfg = dict(
        vocab_size=DEFAULT_VOCAB,
        width=32,
        num_heads=2,
        lru_width=48,
        mlp_expanded_width=64,
        num_layers=3,
        attention_window_size=4,
        conv1d_width=4,
        logits_soft_cap=30.0,
        embeddings_scale_by_sqrt_dim=True,
    )
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise KeyError(f"unknown config keys: {sorted(unknown)}")
    cfg.update(overrides)
    return cfg


def block_types(cfg) -> list:
    return [BLOCK_PATTERN[i % 3] for i in range(cfg["num_layers"])]


def config_json(cfg, dtype: str = "float32") -> dict:
    """The ``config.json`` dict, in the layout transformers 5 writes (refmodels, torch-free)."""
    return refmodels.hf_config_json(cfg, dtype=dtype)


def hf_tensors(cfg, seed: int = 0) -> dict:
    """Seeded random float32 weights {HF name: array} for ``cfg`` (docs/model-math.md,
    'Checkpoint tensor names').

    Scales follow refmodels' rules (embedding std 0.3, zero-centred norm scales and biases of
    std 0.1, realistic RG-LRU decay, residual-writing projections 8/sqrt(fan_in)) so a random
    model does not just repeat its input token."""
    rng = np.random.default_rng(seed)
    D, L, F, H = cfg["width"], cfg["lru_width"], cfg["mlp_expanded_width"], cfg["num_heads"]
    V, K = cfg["vocab_size"], cfg["conv1d_width"]
    hd = D // H
    bs = L // H

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def lin(out_dim, in_dim, gain=1.0):
        return normal((out_dim, in_dim), gain / math.sqrt(in_dim))

    t = {
        "model.embed_tokens.weight": normal((V, D), 0.3),
        "model.final_norm.weight": normal((D,), 0.1),
    }
    for i, kind in enumerate(block_types(cfg)):
        p = f"model.layers.{i}."
        t[p + "temporal_pre_norm.weight"] = normal((D,), 0.1)
        t[p + "channel_pre_norm.weight"] = normal((D,), 0.1)
        t[p + "mlp_block.gate_proj.weight"] = lin(F, D)
        t[p + "mlp_block.gate_proj.bias"] = normal((F,), 0.1)
        t[p + "mlp_block.up_proj.weight"] = lin(F, D)
        t[p + "mlp_block.up_proj.bias"] = normal((F,), 0.1)
        t[p + "mlp_block.down_proj.weight"] = lin(D, F, 8.0)
        t[p + "mlp_block.down_proj.bias"] = normal((D,), 0.1)
        tb = p + "temporal_block."
        if kind == "recurrent":
            t[tb + "linear_x.weight"] = lin(L, D)
            t[tb + "linear_x.bias"] = normal((L,), 0.1)
            t[tb + "linear_y.weight"] = lin(L, D)
            t[tb + "linear_y.bias"] = normal((L,), 0.1)
            t[tb + "linear_out.weight"] = lin(D, L, 8.0)
            t[tb + "linear_out.bias"] = normal((D,), 0.1)
            t[tb + "conv_1d.weight"] = normal((L, 1, K), 1.0 / math.sqrt(K))
            t[tb + "conv_1d.bias"] = normal((L,), 0.1)
            r2 = rng.uniform(0.9 ** 2, 0.999 ** 2, L)
            t[tb + "rg_lru.recurrent_param"] = np.log(np.exp(-0.5 * np.log(r2)) - 1.0).astype(
                np.float32)
            t[tb + "rg_lru.input_gate_weight"] = normal((H, bs, bs), 1.0 / math.sqrt(bs))
            t[tb + "rg_lru.input_gate_bias"] = normal((H, bs), 0.1)
            t[tb + "rg_lru.recurrent_gate_weight"] = normal((H, bs, bs), 1.0 / math.sqrt(bs))
            t[tb + "rg_lru.recurrent_gate_bias"] = normal((H, bs), 0.1)
        else:
            t[tb + "q_proj.weight"] = lin(H * hd, D)
            t[tb + "k_proj.weight"] = lin(hd, D)
            t[tb + "v_proj.weight"] = lin(hd, D)
            t[tb + "o_proj.weight"] = lin(D, H * hd, 8.0)
            t[tb + "o_proj.bias"] = normal((D,), 0.1)
    return t


def _cast(arr, dtype: str):
    # np.array, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,).
    if dtype == "float32":
        return np.array(arr, dtype=np.float32, order="C")
    if dtype == "float16":
        return np.array(arr, dtype=np.float16, order="C")
    if dtype == "bfloat16":
        return (f32_to_bf16_bits(arr), "bfloat16")
    raise ValueError(f"unsupported dtype {dtype!r}")


_SPM_CACHE = {}


def tokenizer_model_path() -> str:
    """Path of a tiny SentencePiece model (trained once per process, ~400 pieces)."""
    if "path" not in _SPM_CACHE:
        from .spm_fixture import train_tiny_spm

        d = tempfile.mkdtemp(prefix="gemma_native_tinyspm_")
        _SPM_CACHE["path"] = train_tiny_spm(d)
    return _SPM_CACHE["path"]


def write_folder(path, config: dict, tensors: dict, dtype: str = "float32",
                 tokenizer: bool = False, filename: str = "model.safetensors"):
    """Writes ``config`` (a config.json dict, written verbatim) and ``tensors`` (name -> array,
    float arrays cast to ``dtype``, other dtypes stored as they are) into folder ``path``."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    out = {}
    for name, arr in tensors.items():
        arr = np.asarray(arr) if not isinstance(arr, tuple) else arr
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
            out[name] = _cast(arr, dtype)
        else:
            out[name] = arr
    write_safetensors(os.path.join(path, filename), out, metadata={"format": "pt"})
    if tokenizer:
        shutil.copyfile(tokenizer_model_path(), os.path.join(path, "tokenizer.model"))
    return path


def write_tiny_checkpoint(path, cfg=None, seed: int = 0, dtype: str = "float32",
                          tokenizer: bool = False):
    """Writes a complete tiny RecurrentGemma folder at ``path`` and returns ``path``.

    cfg: a neutral config dict (:func:`small_config` / ``refmodels.tiny_config`` keys);
    default :func:`small_config`.  dtype: "float32", "bfloat16" or "float16" for the weights.
    tokenizer: also copy a tiny SentencePiece model in as ``tokenizer.model`` (needs
    ``sentencepiece``; keep cfg's vocab_size equal to its 400 pieces).
    """
    cfg = small_config() if cfg is None else dict(cfg)
    return write_folder(path, config_json(cfg, dtype), hf_tensors(cfg, seed), dtype=dtype,
                        tokenizer=tokenizer)

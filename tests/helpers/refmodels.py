"""Reference-model fixtures for testing gemma_native against code we did not write.

Two independent implementations of RecurrentGemma (Griffin) are wrapped here:

* the DeepMind reference, PyPI ``recurrentgemma==1.0.1`` (torch half only, see
  :func:`load_official`), and
* Hugging Face ``transformers`` (``RecurrentGemmaForCausalLM``).

Everything works on *tiny* random models so the tests stay fast.  The neutral
config dict produced by :func:`tiny_config` is the single description of a
model; helpers translate it into each implementation's own config.

Weight conventions (official torch state dict -> Hugging Face safetensors names) are those of
docs/model-math.md, 'Checkpoint tensor names'.

This is a helper module, not a test file.  Import errors of optional packages
(torch, recurrentgemma, transformers, safetensors) surface only when the
corresponding helper is called; ``load_official()`` returns None instead.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import sys
import types

import numpy as np

# Block pattern shared by both implementations (docs/model-math.md, 'Griffin block structure').
BLOCK_PATTERN = ("recurrent", "recurrent", "attention")

_TRANSFORMERS_VERSION_WRITTEN = "5.23.0"


# --------------------------------------------------------------------------------------------
# official package loading
# --------------------------------------------------------------------------------------------

def load_official():
    """Return the ``recurrentgemma.torch`` subpackage, or None if unavailable.

    ``recurrentgemma/__init__.py`` imports the JAX half (``recurrentgemma.jax``), and JAX is not
    installed.  To avoid executing it, a bare package module object is created by hand with the
    real ``__path__`` and registered in ``sys.modules`` before importing ``recurrentgemma.torch``
    (whose own imports only need ``recurrentgemma.common`` and the torch modules).
    """
    already = sys.modules.get("recurrentgemma.torch")
    if already is not None:
        return already
    try:
        import torch  # noqa: F401
    except ImportError:
        return None

    parent = sys.modules.get("recurrentgemma")
    created_parent = False
    if parent is None:
        try:
            spec = importlib.util.find_spec("recurrentgemma")  # does not execute __init__.py
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        parent = types.ModuleType("recurrentgemma")
        parent.__path__ = list(spec.submodule_search_locations)
        parent.__file__ = spec.origin
        parent.__package__ = "recurrentgemma"
        parent.__spec__ = spec
        parent.__version__ = _dist_version("recurrentgemma")
        sys.modules["recurrentgemma"] = parent
        created_parent = True
    try:
        return importlib.import_module("recurrentgemma.torch")
    except ImportError:
        # e.g. einops / jaxtyping missing: undo our stub so nothing half-initialised lingers.
        if created_parent:
            for name in [n for n in sys.modules if n == "recurrentgemma" or n.startswith("recurrentgemma.")]:
                del sys.modules[name]
        return None


def _dist_version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


def _torch():
    import torch
    return torch


def _torch_dtype(dtype):
    torch = _torch()
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "f32": torch.float32,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "f16": torch.float16}
    try:
        return table[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}") from None


_DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "f32": "float32",
                "bfloat16": "bfloat16", "bf16": "bfloat16",
                "float16": "float16", "fp16": "float16", "f16": "float16"}


def _dtype_name(dtype):
    """Canonical dtype name; works without torch for string names (tinyckpt relies on it)."""
    if isinstance(dtype, str):
        try:
            return _DTYPE_NAMES[dtype.lower()]
        except KeyError:
            raise ValueError(f"unsupported dtype {dtype!r}") from None
    torch = _torch()
    t = _torch_dtype(dtype)
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[t]


@contextlib.contextmanager
def torch_threads(n=1):
    """Temporarily set torch's intra-op thread count (restored on exit).

    The tiny models here are far too small to profit from threads, and on a loaded machine the
    OpenMP pool makes them 5-10x slower; tests wrap their reference calls in torch_threads(1).
    """
    torch = _torch()
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------

def tiny_config(**overrides) -> dict:
    """A tiny but non-degenerate Griffin config in our neutral form.

    Defaults: width 96 (sqrt(96)=9.7979... is not exact in bf16 -> bf16 embed scale 9.8125),
    2 heads of dim 48 (RoPE on the first 24 dims, rotate_half pairs (d, d+12)), lru_width 128
    (!= width, so the linear_x / linear_out shapes are not square; 2 RG-LRU blocks of 64),
    5 layers -> pattern R R A R R (both kinds, last recurrent), window 8.
    """
    cfg = dict(
        vocab_size=256,
        width=96,
        num_heads=2,
        lru_width=128,
        mlp_expanded_width=3 * 96,
        num_layers=5,
        attention_window_size=8,
        conv1d_width=4,
        logits_soft_cap=30.0,
        embeddings_scale_by_sqrt_dim=True,
    )
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise KeyError(f"unknown config keys: {sorted(unknown)}")
    if "width" in overrides and "mlp_expanded_width" not in overrides:
        cfg["mlp_expanded_width"] = 3 * overrides["width"]
    cfg.update(overrides)
    if cfg["width"] % cfg["num_heads"] or cfg["lru_width"] % cfg["num_heads"]:
        raise ValueError("num_heads must divide width and lru_width")
    if cfg["conv1d_width"] != 4:
        # The official torch Conv1D supports other widths, but the released models and these
        # fixtures use 4 (docs/model-math.md, 'Conv1D').
        raise ValueError("conv1d_width must be 4")
    return cfg


def block_types(cfg) -> list[str]:
    """Per-layer block kinds, 'recurrent' / 'attention' (layer i is attention iff i % 3 == 2)."""
    return [BLOCK_PATTERN[i % 3] for i in range(cfg["num_layers"])]


def _official_config(cfg):
    rg = load_official()
    if rg is None:
        raise ImportError("recurrentgemma (torch) is not importable")
    kinds = {"recurrent": rg.TemporalBlockType.RECURRENT, "attention": rg.TemporalBlockType.ATTENTION}
    return rg.GriffinConfig(
        vocab_size=cfg["vocab_size"],
        width=cfg["width"],
        mlp_expanded_width=cfg["mlp_expanded_width"],
        num_heads=cfg["num_heads"],
        block_types=tuple(kinds[k] for k in block_types(cfg)),
        embeddings_scale_by_sqrt_dim=cfg["embeddings_scale_by_sqrt_dim"],
        attention_window_size=cfg["attention_window_size"],
        logits_soft_cap=cfg["logits_soft_cap"],
        lru_width=cfg["lru_width"],
    )


# --------------------------------------------------------------------------------------------
# random weights
# --------------------------------------------------------------------------------------------

# Why not the official init scales: with TIED embeddings a random model whose residual stream is
# dominated by the (sqrt(D)-scaled) token embedding just predicts "repeat the current token"
# (self-logit ~ sqrt(D) x the others), so greedy output is one constant token and tests learn
# nothing.  Measured on the tiny config: EMBED_STD 0.5 / gain 1 -> 100% self-prediction;
# EMBED_STD 0.3 with the residual-writing projections (linear_out, ffw_down, proj_final) at
# 8/sqrt(fan_in) -> logits std ~3, max |logit| ~11-14 (cap 30 never near saturation), median
# top1-top2 gap ~0.5-0.9, ~20% self-prediction, 8-18 distinct tokens in 24 greedy steps.
EMBED_STD = 0.3
OUT_GAIN = 8.0
NORM_SCALE_STD = 0.1
BIAS_STD = 0.1


_RESIDUAL_WRITERS = ("linear_out.weight", "ffw_down.weight", "proj_final.weight")


def _randomize_official_(model, cfg, seed):
    """Overwrite EVERY parameter of an official Griffin with seeded random values.

    The official init leaves all biases and RMSNorm scales at exactly 0 (so (1+scale) == 1) and
    uses a tiny conv init (std 0.05); a model like that would not catch sign / offset / transpose
    bugs in those tensors.  Rules (by official parameter name):
      embedder.input_embedding      N(0, EMBED_STD)
      *.scale (RMSNorm)             N(0, 0.1)        (zero-centred, used as 1+scale)
      biases (.bias, .b)            N(0, 0.1)
      rg_lru.a_param                official ring init: r^2 ~ U[0.81, 0.998], a_param = log(1/r - 1)
                                    so softplus(a_param) = -ln r  (realistic decay)
      linear_out / ffw_down / proj_final weights   N(0, OUT_GAIN/sqrt(fan_in))
      everything else (weights)     N(0, 1/sqrt(fan_in)), fan_in = the contracted input dim:
                                    nn.Linear [out,in] -> in; ffw_up.w [2,D,F] -> D;
                                    BlockDiagonal w [H,i,o] -> i; conv_1d.w [4,L] -> 4.
    """
    torch = _torch()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            if name == "embedder.input_embedding":
                new = torch.randn(shape, generator=gen) * EMBED_STD
            elif leaf == "scale":
                new = torch.randn(shape, generator=gen) * NORM_SCALE_STD
            elif leaf in ("bias", "b"):
                new = torch.randn(shape, generator=gen) * BIAS_STD
            elif leaf == "a_param":
                min_rad, max_rad, eps = 0.9, 0.999, 1e-8
                r2 = torch.rand(shape, generator=gen, dtype=torch.float64)
                r2 = r2 * (max_rad**2 - min_rad**2) + (min_rad**2 + eps)
                log_r = 0.5 * torch.log(r2)             # ln r  (< 0)
                new = torch.log(torch.exp(-log_r) - 1.0)  # softplus^-1(-ln r)
                new = new.float()
            elif name.endswith("conv_1d.w"):
                new = torch.randn(shape, generator=gen) / math.sqrt(shape[0])
            elif len(shape) == 2:                       # nn.Linear [out, in]
                gain = OUT_GAIN if name.endswith(_RESIDUAL_WRITERS) else 1.0
                new = torch.randn(shape, generator=gen) * (gain / math.sqrt(shape[1]))
            elif len(shape) == 3:                       # ffw_up.w [2, D, F], block-diag [H, i, o]
                new = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
            else:
                raise AssertionError(f"no randomisation rule for {name} {shape}")
            p.copy_(new.to(p.dtype))


def make_official(cfg, seed, dtype=None):
    """An official ``recurrentgemma.torch.Griffin`` (eval mode) with seeded random weights.

    The weights are drawn in float32 and then cast to ``dtype`` (default float32), so the bf16
    model holds exactly the bf16 rounding of the fp32 model of the same seed.  Gradient
    checkpointing (the official default!) is switched off.  The global torch RNG is not disturbed.
    """
    torch = _torch()
    rg = load_official()
    if rg is None:
        raise ImportError("recurrentgemma (torch) is not importable")
    dtype = torch.float32 if dtype is None else _torch_dtype(dtype)
    with torch.random.fork_rng(devices=[]):
        # The constructor runs the official reset_parameters() with the global RNG; fork it so
        # that calling this helper does not change the caller's random stream.
        model = rg.Griffin(_official_config(cfg), gradient_checkpointing=False,
                           device="cpu", dtype=torch.float32)
    _randomize_official_(model, cfg, seed)
    model = model.to(dtype)
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# official forward / greedy
# --------------------------------------------------------------------------------------------

def _as_tokens(tokens):
    torch = _torch()
    t = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2:
        raise ValueError("tokens must be [B, T]")
    return t


def official_logits(model, tokens) -> np.ndarray:
    """Soft-capped logits of the official model, float32 numpy [B, T, V].

    ``segment_pos = arange(T)`` for every row (position 0 = first token: RG-LRU reset, new
    attention segment).  No cache.
    """
    torch = _torch()
    tok = _as_tokens(tokens)
    b, t = tok.shape
    pos = torch.arange(t, dtype=torch.long)[None].expand(b, t).contiguous()
    with torch.no_grad():
        logits, _ = model(tok, pos, cache=None, return_logits=True, return_cache=False)
    return logits.float().numpy()


def assert_greedy_agrees(ours, ref, prompt, ref_last_logits, atol):
    """Our greedy continuation ``ours`` against the reference's ``ref`` (both after ``prompt``),
    with a verdict that cannot depend on rounding: the two engines' fp32 logits differ by at
    most ``atol`` (checked by the logit tests), so wherever the reference's top-1 leads every
    other token by >= 2 * atol we must pick the same token.  At the first step where the two
    differ (same prefix in both), the reference's lead of its token over ours must be below
    2 * atol -- a near-tie either engine may resolve either way; after it the continuations
    are not compared (their prefixes differ).  ``ref_last_logits(ids)`` gives the reference's
    logits at the last position of ``ids``."""
    ours, ref = list(ours), list(ref)
    assert len(ours) == len(ref), (len(ours), len(ref))
    k = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    if k is None:
        return
    logits = np.asarray(ref_last_logits(list(prompt) + ref[:k]), np.float64)
    lead = float(logits[ref[k]] - logits[ours[k]])
    assert lead < 2 * atol, (f"step {k}: we chose {ours[k]}, the reference {ref[k]}, which its "
                             f"logits put {lead:.3g} ahead (>= 2 * atol = {2 * atol})")


def official_greedy(model, prompt_ids, n) -> list[int]:
    """Greedy continuation of ``n`` tokens by re-running the full (cache-free) forward pass.

    O(n * T^2) but unambiguous: every step is the official prefill computation on the whole
    sequence with positions 0..T-1.  Argmax of the soft-capped logits (ties -> lowest id).
    """
    seq = [int(x) for x in prompt_ids]
    if not seq:
        raise ValueError("empty prompt")
    out = []
    for _ in range(int(n)):
        logits = official_logits(model, np.asarray([seq]))
        nxt = int(np.argmax(logits[0, -1]))
        out.append(nxt)
        seq.append(nxt)
    return out


def official_greedy_cached(model, prompt_ids, n) -> list[int]:
    """Greedy continuation using the official cache (prefill once, then 1-token decode steps).

    Prefill runs the whole prompt without a cache and returns the freshly built cache
    (``_attention_cache_from_prompt`` ring buffer, conv/LRU states); each decode step feeds one
    token at position ``len(seq)-1``.  Must agree with :func:`official_greedy` (tested).
    """
    torch = _torch()
    seq = [int(x) for x in prompt_ids]
    if not seq:
        raise ValueError("empty prompt")
    out = []
    if n <= 0:
        return out
    with torch.no_grad():
        tok = torch.tensor([seq], dtype=torch.long)
        pos = torch.arange(len(seq), dtype=torch.long)[None]
        logits, cache = model(tok, pos, cache=None, return_logits=True, return_cache=True)
        for step in range(int(n)):
            nxt = int(torch.argmax(logits[0, -1].float()))
            out.append(nxt)
            seq.append(nxt)
            if step == n - 1:
                break
            tok = torch.tensor([[nxt]], dtype=torch.long)
            pos = torch.tensor([[len(seq) - 1]], dtype=torch.long)
            logits, cache = model(tok, pos, cache=cache, return_logits=True, return_cache=True)
    return out


# --------------------------------------------------------------------------------------------
# official -> Hugging Face tensors (docs/model-math.md, 'Checkpoint tensor names')
# --------------------------------------------------------------------------------------------

def _np32(t):
    return t.detach().to("cpu").float().contiguous().numpy().copy()


def official_to_hf_tensors(model) -> dict:
    """Official state dict -> {HF tensor name: float32 numpy array} (docs/model-math.md,
    'Checkpoint tensor names').

    ``lm_head.weight`` is not written (tied to ``model.embed_tokens.weight``).  A bf16 model
    converts exactly (bf16 -> fp32 is lossless).
    """
    sd = model.state_dict()
    out = {}
    for name, t in sd.items():
        a = _np32(t)
        if name == "embedder.input_embedding":
            out["model.embed_tokens.weight"] = a
            continue
        if name == "final_norm.scale":
            out["model.final_norm.weight"] = a
            continue
        if not name.startswith("blocks."):
            raise KeyError(f"unexpected official tensor {name}")
        _, idx, rest = name.split(".", 2)
        pre = f"model.layers.{idx}."
        if rest in ("temporal_pre_norm.scale", "channel_pre_norm.scale"):
            out[pre + rest[: -len("scale")] + "weight"] = a
        elif rest == "mlp_block.ffw_up.w":                    # [2, D, F]
            out[pre + "mlp_block.gate_proj.weight"] = np.ascontiguousarray(a[0].T)
            out[pre + "mlp_block.up_proj.weight"] = np.ascontiguousarray(a[1].T)
        elif rest == "mlp_block.ffw_up.b":                    # [2, 1, 1, F]
            out[pre + "mlp_block.gate_proj.bias"] = np.ascontiguousarray(a[0, 0, 0])
            out[pre + "mlp_block.up_proj.bias"] = np.ascontiguousarray(a[1, 0, 0])
        elif rest.startswith("mlp_block.ffw_down."):
            out[pre + "mlp_block.down_proj." + rest.rsplit(".", 1)[1]] = a
        elif rest.startswith("recurrent_block."):
            sub = rest[len("recurrent_block."):]
            tb = pre + "temporal_block."
            if sub == "conv_1d.w":                            # [4, L] -> [L, 1, 4]
                out[tb + "conv_1d.weight"] = np.ascontiguousarray(a.T[:, None, :])
            elif sub == "conv_1d.b":
                out[tb + "conv_1d.bias"] = a
            elif sub == "rg_lru.a_param":
                out[tb + "rg_lru.recurrent_param"] = a
            elif sub in ("rg_lru.input_gate.w", "rg_lru.input_gate.b",
                         "rg_lru.a_gate.w", "rg_lru.a_gate.b"):
                gate, wb = sub[len("rg_lru."):].split(".")
                hf_gate = "input_gate" if gate == "input_gate" else "recurrent_gate"
                out[tb + f"rg_lru.{hf_gate}_{'weight' if wb == 'w' else 'bias'}"] = a
            elif sub.split(".")[0] in ("linear_x", "linear_y", "linear_out"):
                out[tb + sub] = a
            else:
                raise KeyError(f"unexpected official tensor {name}")
        elif rest.startswith("attention_block."):
            sub = rest[len("attention_block."):]
            layer, leaf = sub.split(".")
            hf_layer = {"proj_q": "q_proj", "proj_k": "k_proj", "proj_v": "v_proj",
                        "proj_final": "o_proj"}[layer]
            out[pre + f"temporal_block.{hf_layer}.{leaf}"] = a
        else:
            raise KeyError(f"unexpected official tensor {name}")
    return out


# --------------------------------------------------------------------------------------------
# Hugging Face folder writing
# --------------------------------------------------------------------------------------------

def hf_config_json(cfg, dtype="float32", style="transformers5") -> dict:
    """config.json contents for a RecurrentGemma HF folder.

    style="transformers5" (default): byte-for-byte the keys/values that transformers 5.23
      ``save_pretrained`` writes (checked by a test): pattern key ``block_types`` (no underscore),
      RoPE as a nested ``rope_parameters`` dict (rope_theta / partial_rotary_factor are NOT
      top-level), ``dtype`` (not ``torch_dtype``), ``head_dim``, and NO
      ``embeddings_scale_by_sqrt_dim`` key (HF always scales by bf16(sqrt(hidden_size))).
    style="hub": the legacy layout of the published google/recurrentgemma-* config.json
      (transformers 4.40 era): ``_block_types``, top-level ``rope_theta`` and
      ``partial_rotary_factor``, ``embeddings_scale_by_sqrt_dim``, ``torch_dtype``.
      Note: transformers 5.23 does NOT map ``_block_types`` onto ``block_types`` (it keeps its
      default pattern, which happens to equal ours); an engine must read both spellings.
    ``intermediate_size`` = 2 * mlp_expanded_width (docs/model-math.md, 'GeGLU MLP').
    """
    d, h = cfg["width"], cfg["num_heads"]
    n = cfg["num_layers"]
    common = {
        "architectures": ["RecurrentGemmaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attention_window_size": cfg["attention_window_size"],
        "bos_token_id": 2,
        "conv1d_width": cfg["conv1d_width"],
        "eos_token_id": 1,
        "final_w_init_variance_scale": 2.0 / n,
        "head_dim": d // h,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": d,
        "intermediate_size": 2 * cfg["mlp_expanded_width"],
        "logits_soft_cap": float(cfg["logits_soft_cap"]),
        "lru_width": cfg["lru_width"],
        "model_type": "recurrent_gemma",
        "num_attention_heads": h,
        "num_hidden_layers": n,
        "num_key_value_heads": 1,
        "pad_token_id": 0,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": True,
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
        "w_init_variance_scale": 0.01,
    }
    if style == "transformers5":
        out = dict(common)
        out["block_types"] = list(BLOCK_PATTERN)
        out["dtype"] = _dtype_name(dtype)
        out["rope_parameters"] = {"partial_rotary_factor": 0.5, "rope_theta": 10000.0,
                                  "rope_type": "default"}
        out["transformers_version"] = _TRANSFORMERS_VERSION_WRITTEN
        if not cfg["embeddings_scale_by_sqrt_dim"]:
            raise ValueError("transformers has no switch for embeddings_scale_by_sqrt_dim=False")
    elif style == "hub":
        out = dict(common)
        out["_block_types"] = list(BLOCK_PATTERN)
        out["embeddings_scale_by_sqrt_dim"] = bool(cfg["embeddings_scale_by_sqrt_dim"])
        out["partial_rotary_factor"] = 0.5
        out["rope_theta"] = 10000.0
        out["torch_dtype"] = _dtype_name(dtype)
        out["transformers_version"] = "4.40.0.dev0"
    else:
        raise ValueError(f"unknown style {style!r}")
    return dict(sorted(out.items()))


def write_hf_folder(path, cfg, tensors, dtype="float32", shards=1, config_style="transformers5"):
    """Write an HF-style folder: config.json + safetensors weights, cast to ``dtype``.

    shards == 1: ``model.safetensors``.  shards > 1: ``model-0000k-of-0000n.safetensors`` plus
    ``model.safetensors.index.json`` (``metadata.total_size`` and ``weight_map``).  Tensors are
    split in sorted-name order into ``shards`` groups of roughly equal byte size.  ``tensors``
    may hold numpy arrays or torch tensors.  Returns ``path``.
    """
    torch = _torch()
    from safetensors.torch import save_file

    tdt = _torch_dtype(dtype)
    shards = int(shards)
    if shards < 1:
        raise ValueError("shards must be >= 1")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_config_json(cfg, dtype=dtype, style=config_style), f, indent=2, sort_keys=True)
        f.write("\n")

    conv = {}
    for name in sorted(tensors):
        v = tensors[name]
        t = v.detach().cpu() if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
        conv[name] = t.to(tdt).contiguous()
    meta = {"format": "pt"}
    if shards == 1:
        save_file(conv, os.path.join(path, "model.safetensors"), metadata=meta)
        return path

    names = list(conv)
    if shards > len(names):
        raise ValueError("more shards than tensors")
    sizes = [conv[k].numel() * conv[k].element_size() for k in names]
    total = sum(sizes)
    groups, cur, acc = [], [], 0
    for i, (k, s) in enumerate(zip(names, sizes)):
        remaining_groups = shards - len(groups)
        remaining_names = len(names) - i
        # close the current group at its byte quota, but keep >= 1 tensor for every later shard
        if cur and remaining_groups > 1 and (acc >= total * (len(groups) + 1) / shards
                                              or remaining_names < remaining_groups):
            groups.append(cur)
            cur = []
        cur.append(k)
        acc += s
    groups.append(cur)
    assert len(groups) == shards, (len(groups), shards)
    weight_map = {}
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: conv[k] for k in group}, os.path.join(path, fname), metadata=meta)
        for k in group:
            weight_map[k] = fname
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return path


# --------------------------------------------------------------------------------------------
# Hugging Face model
# --------------------------------------------------------------------------------------------

def hf_config(cfg):
    """A transformers ``RecurrentGemmaConfig`` for ``cfg`` (eager attention)."""
    from transformers import RecurrentGemmaConfig
    d = hf_config_json(cfg)
    for k in ("architectures", "dtype", "transformers_version", "model_type"):
        d.pop(k)
    c = RecurrentGemmaConfig(**d)
    c._attn_implementation = "eager"
    return c


def make_hf(cfg, seed):
    """A transformers ``RecurrentGemmaForCausalLM`` (fp32, eval, eager attention).

    Its weights are exactly those of ``make_official(cfg, seed)`` converted with
    :func:`official_to_hf_tensors` (so both are randomised by the same rules and the two
    implementations can be compared directly).  Loaded with a strict ``load_state_dict``;
    ``lm_head.weight`` stays tied to ``model.embed_tokens.weight``.
    """
    torch = _torch()
    from transformers import RecurrentGemmaForCausalLM
    tensors = official_to_hf_tensors(make_official(cfg, seed))
    with torch.random.fork_rng(devices=[]):
        model = RecurrentGemmaForCausalLM(hf_config(cfg))
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"HF state dict mismatch: missing={missing} unexpected={unexpected}")
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("lm_head is not tied to embed_tokens")
    model = model.float().eval()
    return model


def hf_logits(model, tokens) -> np.ndarray:
    """Soft-capped logits of a transformers RecurrentGemma, float32 numpy [B, T, V].

    ``use_cache=False``: stateless (HF keeps RG-LRU/conv state inside the modules otherwise), and
    avoids HF's ``conv1d_state`` being sized [B, hidden_size, 3] instead of [B, lru_width, 3].
    Positions default to arange(T).
    """
    torch = _torch()
    tok = _as_tokens(tokens)
    with torch.no_grad():
        out = model(input_ids=tok, use_cache=False)
    return out.logits.float().numpy()


def hf_save(model, path, max_shard_size=None):
    """``save_pretrained`` (safetensors is the only format in transformers 5).  Returns path."""
    kw = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(path, **kw)
    return path


def hf_load(path):
    """``RecurrentGemmaForCausalLM.from_pretrained(path)`` in fp32, eager, eval."""
    torch = _torch()
    from transformers import RecurrentGemmaForCausalLM
    model = RecurrentGemmaForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                      attn_implementation="eager")
    return model.eval()

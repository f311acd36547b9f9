"""The engines the bench times, each built inside its own child process from a spec (a dict):
ours (gemma_native, through its public API) and the peers -- the official recurrentgemma
PyTorch model, transformers' *ForCausalLM, and llama.cpp through llama-cpp-python.

Every engine has the same surface, so one harness times them all:

    vocab, weights_bytes, version, threads    facts for the report
    max_pos                                   largest position it can decode at, or None
    far_note, far_from_largest                how place() reaches a far position
    prefill(ids [B, T]) -> state              runs a prompt (the state is opaque)
    decode(state, toks [B])                   one step for each row
    place(state, pos, source_ids) -> state    a state at position `pos`, or None if it cannot
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import numpy as np

from .probes import dist_version


class Ours:
    name = "ours"

    def __init__(self, spec):
        import gemma_native as gn

        if spec.get("threads"):
            gn.set_num_threads(int(spec["threads"]))
        from gemma_native.random_model import model_from_spec

        self.model = model_from_spec(spec["model"], dtype=spec.get("dtype"), seed=0,
                                     activations=spec.get("activations") or "int8",
                                     pack_weights=spec.get("pack_weights"))
        self.cfg = self.model.config
        self.vocab = self.cfg.vocab_size
        self.weights_bytes = self.model.weights_nbytes
        self.griffin = self.cfg.architecture == "recurrent_gemma"
        self.max_pos = None if self.griffin else self.cfg.max_position_embeddings
        self.far_note = ("state placed: largest prefill, position relabelled" if self.griffin
                         else "prefilled for real (chunks of 1024)")
        self.far_from_largest = self.griffin
        self.version = gn.__version__  # of the code imported, installed or not
        self.threads = gn.backend_info()["num_threads"]

    def prefill(self, ids):
        states = [self.model.new_state() for _ in range(ids.shape[0])]
        logits = self.model.forward_batch(ids, states)
        int(np.argmax(logits[0]))  # what picking the next token costs
        return states

    def decode(self, states, toks):
        logits = self.model.forward_batch(np.asarray(toks)[:, None], states)
        int(np.argmax(logits[0]))

    def place(self, states, pos, source_ids):
        if self.griffin:
            # RecurrentGemma's state has a fixed size: after the largest prefill every value is
            # real, so relabelling its position puts it where 'pos' tokens would have.
            st = states[0]
            st.load_numpy(st.to_numpy(), pos)
            return states
        st = [self.model.new_state()]  # a KV cache grows: prefill for real
        for lo in range(0, pos, 1024):
            self.model.forward_batch(source_ids[None, lo:min(pos, lo + 1024)], st)
        return st


def load_official():
    """recurrentgemma.torch without running recurrentgemma/__init__.py (which imports JAX)."""
    if "recurrentgemma.torch" in sys.modules:
        return sys.modules["recurrentgemma.torch"]
    spec = importlib.util.find_spec("recurrentgemma")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("recurrentgemma is not installed")
    if "recurrentgemma" not in sys.modules:
        parent = types.ModuleType("recurrentgemma")
        parent.__path__ = list(spec.submodule_search_locations)
        parent.__spec__ = spec
        sys.modules["recurrentgemma"] = parent
    return importlib.import_module("recurrentgemma.torch")


def _torch_dtype(torch, name):
    return {"bfloat16": torch.bfloat16, "float32": torch.float32,
            "float16": torch.float16}[name or "bfloat16"]


def _param_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


class Official:
    name = "official"

    def __init__(self, spec):
        import torch

        torch.set_num_threads(int(spec["threads"]))
        self.torch = torch
        rg = load_official()
        c = spec["config"]
        kinds = {"recurrent": rg.TemporalBlockType.RECURRENT,
                 "attention": rg.TemporalBlockType.ATTENTION}
        conf = rg.GriffinConfig(
            vocab_size=c["vocab_size"], width=c["width"], mlp_expanded_width=c["mlp_width"],
            num_heads=c["num_heads"], block_types=tuple(kinds[k] for k in c["block_types"]),
            embeddings_scale_by_sqrt_dim=True, attention_window_size=c["attention_window_size"],
            logits_soft_cap=c["logits_soft_cap"], lru_width=c["lru_width"])
        dt = _torch_dtype(torch, spec.get("peer_dtype"))
        with torch.no_grad():
            self.model = rg.Griffin(conf, gradient_checkpointing=False, device="cpu", dtype=dt)
        self.model.eval()
        self.vocab = c["vocab_size"]
        self.weights_bytes = _param_bytes(self.model)
        self.max_pos = None
        self.far_note = "cache from the near prefill, segment_pos set to the far position"
        self.far_from_largest = False
        self.version = dist_version("recurrentgemma")
        self.threads = torch.get_num_threads()

    def _run(self, tok, pos, cache):
        with self.torch.inference_mode():
            logits, cache = self.model(tok, pos, cache=cache, return_logits=True,
                                       return_cache=True)
        int(self.torch.argmax(logits[0, -1]))
        return cache

    def prefill(self, ids):
        torch = self.torch
        tok = torch.as_tensor(ids, dtype=torch.long)
        pos = torch.arange(tok.shape[1], dtype=torch.long)[None].expand_as(tok).contiguous()
        return [self._run(tok, pos, None), tok.shape[1]]  # [cache, next position]

    def decode(self, state, toks):
        torch = self.torch
        tok = torch.as_tensor(np.asarray(toks)[:, None], dtype=torch.long)
        pos = torch.full_like(tok, state[1])
        state[0] = self._run(tok, pos, state[0])
        state[1] += 1

    def place(self, state, pos, source_ids):
        state[1] = pos
        return state


class Transformers:
    name = "transformers"

    def __init__(self, spec):
        import torch
        import transformers as tf

        torch.set_num_threads(int(spec["threads"]))
        self.torch = torch
        dt = _torch_dtype(torch, spec.get("peer_dtype"))
        if spec.get("hf_path"):
            self.model = tf.AutoModelForCausalLM.from_pretrained(spec["hf_path"], dtype=dt)
        else:
            # dtype= creates (and initialises) the weights in that dtype directly
            self.model = tf.AutoModelForCausalLM.from_config(hf_config(tf, spec["config"]),
                                                             dtype=dt)
        self.model.eval()
        self.recurrent = self.model.config.model_type == "recurrent_gemma"
        self.vocab = self.model.config.vocab_size
        self.weights_bytes = _param_bytes(self.model)
        self.max_pos = None if self.recurrent else self.model.config.max_position_embeddings
        self.far_note = "not measured (a real 10000-token prefill is too slow)"
        self.far_from_largest = False
        self.version = tf.__version__
        self.threads = torch.get_num_threads()

    def _fwd(self, tok, cache):
        with self.torch.inference_mode():
            out = self.model(input_ids=tok, past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        int(self.torch.argmax(out.logits[0, -1]))

    def prefill(self, ids):
        from transformers import DynamicCache

        tok = self.torch.as_tensor(ids, dtype=self.torch.long)
        if self.recurrent:  # its recurrent states live in the layers: reset them
            self.model._setup_cache(self.model.config, tok.shape[0], "cpu", self.model.dtype)
        cache = DynamicCache(config=self.model.config)
        self._fwd(tok, cache)
        return cache

    def decode(self, cache, toks):
        self._fwd(self.torch.as_tensor(np.asarray(toks)[:, None], dtype=self.torch.long),
                  cache)

    def place(self, state, pos, source_ids):
        return None


def hf_config(tf, c):
    """A transformers config at the shape of our config dict `c` (tf: the transformers module)."""
    arch = c["architecture"]
    common = dict(vocab_size=c["vocab_size"], hidden_size=c["width"],
                  num_hidden_layers=c["num_layers"], num_attention_heads=c["num_heads"],
                  head_dim=c["head_dim"])
    if arch == "recurrent_gemma":
        return tf.RecurrentGemmaConfig(intermediate_size=2 * c["mlp_width"],
                                       lru_width=c["lru_width"],
                                       attention_window_size=c["attention_window_size"],
                                       num_key_value_heads=c["num_kv_heads"],
                                       logits_soft_cap=c["logits_soft_cap"], **common)
    common.update(intermediate_size=c["mlp_width"], num_key_value_heads=c["num_kv_heads"],
                  max_position_embeddings=c["max_position_embeddings"])
    if arch == "gemma":
        return tf.GemmaConfig(**common)
    layer_kinds = ["sliding_attention" if t == "sliding" else "full_attention"
                   for t in c["layer_types"]]
    scalar = _int_if_whole(c["query_pre_attn_scalar"])
    if arch == "gemma2":
        return tf.Gemma2Config(sliding_window=c["sliding_window"], layer_types=layer_kinds,
                               query_pre_attn_scalar=scalar,
                               attn_logit_softcapping=c["attn_logit_softcapping"] or None,
                               final_logit_softcapping=c["final_logit_softcapping"] or None,
                               **common)
    rope = {"full_attention": {"rope_type": "default", "rope_theta": c["rope_theta"]},
            "sliding_attention": {"rope_type": "default", "rope_theta": c["rope_local_theta"]}}
    return tf.Gemma3TextConfig(sliding_window=c["sliding_window"], layer_types=layer_kinds,
                               query_pre_attn_scalar=scalar, rope_parameters=rope, **common)


def _int_if_whole(x):
    return int(x) if float(x).is_integer() else float(x)


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, spec):
        import llama_cpp

        self.n_ctx = int(spec["n_ctx"])
        self.llm = llama_cpp.Llama(spec["gguf"], n_ctx=self.n_ctx, n_batch=512,
                                   n_threads=int(spec["threads"]),
                                   n_threads_batch=int(spec["threads"]), verbose=False)
        self.vocab = self.llm.n_vocab()
        self.weights_bytes = os.path.getsize(spec["gguf"])
        self.max_pos = self.n_ctx
        self.far_note = "prefilled for real"
        self.far_from_largest = False
        self.version = dist_version("llama_cpp_python")
        self.threads = int(spec["threads"])

    def prefill(self, ids):
        if ids.shape[0] != 1:
            raise NotImplementedError("batched decode is not exposed by llama-cpp-python")
        self.llm.reset()
        self.llm.eval([int(t) for t in ids[0]])
        return True

    def decode(self, state, toks):
        if len(toks) != 1:
            raise NotImplementedError("batched decode is not exposed by llama-cpp-python")
        self.llm.eval([int(toks[0])])

    def place(self, state, pos, source_ids):
        self.llm.reset()
        self.llm.eval([int(t) for t in source_ids[:pos]])
        return True


ENGINES = {"ours": Ours, "official": Official, "transformers": Transformers,
           "llama.cpp": LlamaCpp}

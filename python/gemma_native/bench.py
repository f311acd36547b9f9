"""gemma-native bench: the speed of one model, next to this machine's own limits and the peers,
all measured in one run.

    gemma-native bench random:recurrentgemma-2b                 # everything, peers included
    gemma-native bench random:gemma3-270m --quick --peers none  # a fast look
    gemma-native bench path/to/model.gguf --only prefill,decode --json out.json
    gemma-native bench random:recurrentgemma-2b --peers official,transformers

MODEL is a Hugging Face folder, a .gguf file, or random:PRESET (gn.random_model presets).

Parts (``--only``, comma separated; default all):
  limits    memory bandwidth (STREAM-like numpy copy on 2 Python threads over halves of a
            1 GiB array, 128 MiB with --quick; read + write bytes/s), read bandwidth (an int64
            sum over the same array size: what decode does to its weights) and GEMM peak (numpy fp32
            n=2048; torch fp32, and torch bf16 at n<=512 when torch is installed: CPUs without
            bf16 hardware run it at ~1 GFLOP/s), measured in this process
  prefill   prompt tokens/s at 128, 512, 2048 tokens
  ttft      time to first token for a 128-token prompt (prefill + picking the token)
  decode    decode tokens/s at batch 1 and 4 (after a 16-token prompt)
  position  decode tokens/s at position ~100 and ~10000.  RecurrentGemma's state has a fixed
            size, so this must stay flat; our state is *placed* at 10000 by prefilling the
            largest prefill size and relabelling its position (the attention ring is full and
            every RG-LRU/conv value is real, as it would be after 10000 tokens), the official
            torch model by passing segment_pos 10000 with its cache.  Transformer KV caches
            grow, so Gemma models are prefilled for real (capped below max_position_embeddings).
  ops       per-op microbenchmarks through gemma_native.ops at the model's shapes: GB/s for
            memory-bound ops (decode GEMV, norms, GeGLU, scan, decode attention), GFLOP/s for
            the GEMM-like prefill linear
  peers     the same prefill/ttft/decode/position measurements on the peers that are installed
            and apply, each in its own subprocess, one at a time (RAM):
              official      recurrentgemma.torch, random weights at the same shape (Griffin)
              transformers  *ForCausalLM random init at the same shape (or from_pretrained for
                            a HF folder), created directly in bf16
              llama.cpp     llama-cpp-python on the same .gguf (or --gguf FILE)
            Peers run with --peer-dtype (default bfloat16) and the same thread count as ours.

The model itself also runs in a subprocess, whose peak RSS (os.wait4) is reported, as is its
RSS right after loading.  Ratios printed (and written with --json): decode tokens/s against the
bandwidth ceiling (weight bytes read per step / measured bandwidth), prefill FLOP/s against the
GEMM peak, position-10000 speed against position-100 speed, and ours against each peer.
Absolute numbers on a shared machine are noise; ratios taken in one run are what count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

PARTS = ("limits", "prefill", "ttft", "decode", "position", "ops", "peers")
PEERS = ("official", "transformers", "llama.cpp")

# The torch peers run bf16 on CPUs without bf16 hardware at ~10 GFLOP/s (a 2048-token prefill
# of a 2B model would take 20 minutes), so by default they get fewer prefill sizes and decode
# steps (--peer-prefill / --peer-decode-tokens change it); the ratios compare equal sizes only.
FULL = dict(prefill=[128, 512, 2048], ttft=128, decode_prompt=16, decode_tokens=32,
            batches=[1, 4], positions=[100, 10000], bw_bytes=1 << 30, gemm_n=2048,
            op_reps=20, prefill_t=512, peer_prefill=[128], peer_decode_tokens=8)
QUICK = dict(prefill=[16, 64], ttft=16, decode_prompt=8, decode_tokens=4, batches=[1, 4],
             positions=[16, 200], bw_bytes=1 << 27, gemm_n=384, op_reps=3, prefill_t=32,
             peer_prefill=[16, 64], peer_decode_tokens=4)


# ------------------------------------------------------------------------------------ helpers
def _now():
    return time.perf_counter()


def _proc_status_bytes(field):
    """VmRSS / VmHWM of this process in bytes (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _tokens(n, vocab, seed):
    hi = max(4, min(int(vocab), 256000))
    return np.random.default_rng(seed).integers(3, hi, size=n).astype(np.int64)


def _version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return None


def _machine():
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_bytes"] = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return info


# ------------------------------------------------------------------------------------ limits
def _best_sliced(size, threads, reps, fn):
    """Best wall time of fn(lo, hi) run at once on `threads` Python threads over equal slices of
    [0, size) (numpy releases the GIL inside fn, so the slices run in parallel)."""
    cuts = np.linspace(0, size, threads + 1).astype(int)
    best = math.inf
    for _ in range(reps):
        barrier = threading.Barrier(threads + 1)

        def work(lo, hi):
            barrier.wait()
            fn(lo, hi)

        ts = [threading.Thread(target=work, args=(cuts[i], cuts[i + 1])) for i in range(threads)]
        for t in ts:
            t.start()
        t0 = _now()
        barrier.wait()
        for t in ts:
            t.join()
        best = min(best, _now() - t0)
    return best


def copy_bandwidth(nbytes, threads=2, reps=5):
    """STREAM-like copy: np.copyto over `threads` slices of one big array.  Returns bytes read +
    written per second (best of reps)."""
    a = np.ones(nbytes // 8)
    b = np.zeros_like(a)
    best = _best_sliced(a.size, threads, reps, lambda lo, hi: np.copyto(b[lo:hi], a[lo:hi]))
    return 2 * a.nbytes / best


def read_bandwidth(nbytes, threads=2, reps=5):
    """Read-only streaming: an int64 sum over `threads` slices of one big array.  Decode only
    reads its weights, so this is its ceiling; a copy also writes.  Returns bytes read per
    second (best of reps)."""
    a = np.ones(nbytes // 8, dtype=np.int64)
    best = _best_sliced(a.size, threads, reps, lambda lo, hi: a[lo:hi].sum())
    return a.nbytes / best


def gemm_peak(n, threads):
    """FLOP/s of square matmuls: numpy fp32, and torch fp32 / bf16 when torch is installed."""
    out = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(3):
        t0 = _now()
        a @ b
        best = min(best, _now() - t0)
    out["numpy_fp32"] = 2 * n**3 / best
    try:
        import torch
    except ImportError:
        return out
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # CPUs without native bf16 run torch's bf16 matmul at ~1 GFLOP/s: keep it small
        for name, dt, m in (("torch_fp32", torch.float32, n),
                            ("torch_bf16", torch.bfloat16, min(n, 512))):
            ta, tb = torch.from_numpy(a[:m, :m]).to(dt), torch.from_numpy(b[:m, :m]).to(dt)
            torch.matmul(ta, tb)
            best = math.inf
            for _ in range(2):
                t0 = _now()
                torch.matmul(ta, tb)
                best = min(best, _now() - t0)
            out[name] = 2 * m**3 / best
            out[name + "_n"] = m
    finally:
        torch.set_num_threads(old)
    return out


def measure_limits(cfg, threads):
    bw = copy_bandwidth(cfg["bw_bytes"], threads=2)
    bw1 = copy_bandwidth(cfg["bw_bytes"], threads=1, reps=3)
    rbw = read_bandwidth(cfg["bw_bytes"], threads=2)
    return {"bandwidth_bytes_per_s": bw, "bandwidth_1thread_bytes_per_s": bw1,
            "read_bandwidth_bytes_per_s": rbw,
            "bandwidth_array_bytes": cfg["bw_bytes"], "gemm_n": cfg["gemm_n"],
            "gemm_flops_per_s": gemm_peak(cfg["gemm_n"], threads)}


# ------------------------------------------------------------------------------------ engines
# Each engine exposes: vocab, weights_bytes, prefill(ids [B, T]) -> state, decode(state,
# toks [B]) -> None, place(state, pos) -> state or None, and `far_note`.

class _Ours:
    name = "ours"

    def __init__(self, spec):
        import gemma_native as gn

        if spec.get("threads"):
            gn.set_num_threads(int(spec["threads"]))
        m = spec["model"]
        if m.startswith("random:"):
            self.model = gn.random_model(m[len("random:"):], dtype=spec.get("dtype") or
                                         "bfloat16", seed=0)
        else:
            self.model = gn.load(m, dtype=spec.get("dtype"))
        self.core = self.model._core
        self.cfg = self.model.config
        self.vocab = self.cfg.vocab_size
        self.weights_bytes = self.model.weights_nbytes
        self.griffin = self.cfg.architecture == "recurrent_gemma"
        self.max_pos = None if self.griffin else self.cfg.max_position_embeddings
        self.far_note = ("state placed: largest prefill, position relabelled" if self.griffin
                         else "prefilled for real (chunks of 1024)")
        self.far_from_largest = self.griffin
        self.version = _version("gemma_native")
        self.threads = gn.backend_info()["num_threads"]

    def prefill(self, ids):
        states = [self.core.new_state() for _ in range(ids.shape[0])]
        logits = self.core.forward(np.ascontiguousarray(ids, np.int32), states, False)
        int(np.argmax(logits[0]))
        return states

    def decode(self, states, toks):
        logits = self.core.forward(np.ascontiguousarray(np.asarray(toks)[:, None], np.int32),
                                   states, False)
        int(np.argmax(logits[0]))

    def place(self, states, pos, source_ids):
        if self.griffin:
            from .model import State

            st = State(self.model, states[0])
            st.load_numpy(st.to_numpy(), pos)
            return states
        st = [self.core.new_state()]
        for lo in range(0, pos, 1024):
            chunk = source_ids[lo:min(pos, lo + 1024)]
            self.core.forward(np.ascontiguousarray(chunk[None], np.int32), st, False)
        return st


def _load_official():
    """recurrentgemma.torch without executing recurrentgemma/__init__.py (which imports JAX)."""
    import importlib
    import importlib.util
    import types

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


class _Official:
    name = "official"

    def __init__(self, spec):
        import torch

        torch.set_num_threads(int(spec["threads"]))
        self.torch = torch
        rg = _load_official()
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
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.max_pos = None
        self.far_note = "cache from the near prefill, segment_pos set to the far position"
        self.far_from_largest = False
        self.version = _version("recurrentgemma")
        self.threads = torch.get_num_threads()

    def _run(self, tok, pos, cache):
        torch = self.torch
        with torch.inference_mode():
            logits, cache = self.model(tok, pos, cache=cache, return_logits=True,
                                       return_cache=True)
        int(torch.argmax(logits[0, -1]))
        return cache

    def prefill(self, ids):
        torch = self.torch
        tok = torch.as_tensor(ids, dtype=torch.long)
        pos = torch.arange(tok.shape[1], dtype=torch.long)[None].expand_as(tok).contiguous()
        return [self._run(tok, pos, None), tok.shape[1]]

    def decode(self, state, toks):
        torch = self.torch
        tok = torch.as_tensor(np.asarray(toks)[:, None], dtype=torch.long)
        pos = torch.full_like(tok, state[1])
        state[0] = self._run(tok, pos, state[0])
        state[1] += 1

    def place(self, state, pos, source_ids):
        state[1] = pos
        return state


class _Transformers:
    name = "transformers"

    def __init__(self, spec):
        import torch
        import transformers as tf

        torch.set_num_threads(int(spec["threads"]))
        self.torch, self.tf = torch, tf
        dt = _torch_dtype(torch, spec.get("peer_dtype"))
        c = spec["config"]
        if spec.get("hf_path"):
            self.model = tf.AutoModelForCausalLM.from_pretrained(spec["hf_path"], dtype=dt)
        else:
            conf = _hf_config(tf, c)
            # dtype= makes the weights be created (and initialised) in bf16 directly
            self.model = tf.AutoModelForCausalLM.from_config(conf, dtype=dt)
        self.model.eval()
        self.recurrent = self.model.config.model_type == "recurrent_gemma"
        self.vocab = self.model.config.vocab_size
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
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
        if self.recurrent:  # its recurrent states live in the layers; reset them
            self.model._setup_cache(self.model.config, tok.shape[0], "cpu", self.model.dtype)
        cache = DynamicCache(config=self.model.config)
        self._fwd(tok, cache)
        return cache

    def decode(self, cache, toks):
        self._fwd(self.torch.as_tensor(np.asarray(toks)[:, None], dtype=self.torch.long),
                  cache)

    def place(self, state, pos, source_ids):
        return None


def _hf_config(tf, c):
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
    types = ["sliding_attention" if t == "sliding" else "full_attention"
             for t in c["layer_types"]]
    if arch == "gemma2":
        return tf.Gemma2Config(sliding_window=c["sliding_window"], layer_types=types,
                               query_pre_attn_scalar=_int_if_whole(c["query_pre_attn_scalar"]),
                               attn_logit_softcapping=c["attn_logit_softcapping"] or None,
                               final_logit_softcapping=c["final_logit_softcapping"] or None,
                               **common)
    return tf.Gemma3TextConfig(sliding_window=c["sliding_window"], layer_types=types,
                               query_pre_attn_scalar=_int_if_whole(c["query_pre_attn_scalar"]),
                               rope_parameters={
                                   "full_attention": {"rope_type": "default",
                                                      "rope_theta": c["rope_theta"]},
                                   "sliding_attention": {"rope_type": "default",
                                                         "rope_theta": c["rope_local_theta"]}},
                               **common)


def _int_if_whole(x):
    return int(x) if float(x).is_integer() else float(x)


class _LlamaCpp:
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
        self.version = _version("llama_cpp_python")
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


ENGINES = {"ours": _Ours, "official": _Official, "transformers": _Transformers,
           "llama.cpp": _LlamaCpp}


# ------------------------------------------------------------------------------------ worker
def _timed(fn):
    t0 = _now()
    out = fn()
    return out, _now() - t0


def _decode_rate(eng, state, batch, n, seed):
    toks = _tokens(n * batch, eng.vocab, seed).reshape(n, batch)
    eng.decode(state, toks[0])  # warm-up step (not timed)
    t0 = _now()
    for i in range(1, n):
        eng.decode(state, toks[i])
    dt = _now() - t0
    return {"steps": n - 1, "seconds": dt, "tokens_per_s": batch * (n - 1) / dt,
            "steps_per_s": (n - 1) / dt}


def run_engine(spec):
    """Runs in a child process: builds one engine and measures the asked parts."""
    parts, cfg = spec["parts"], spec["settings"]
    res = {"engine": spec["engine"], "errors": {}, "skipped": {}}
    t_start = _now()

    def note(what):
        if spec.get("progress_file"):
            with open(spec["progress_file"], "a") as f:
                f.write(f"[bench]   {spec['engine']} +{_now() - t_start:.0f}s: {what}\n")

    note("building the model")
    eng, res["load_seconds"] = _timed(lambda: ENGINES[spec["engine"]](spec))
    res.update(version=eng.version, threads=eng.threads, weights_bytes=eng.weights_bytes,
               rss_after_load_bytes=_proc_status_bytes("VmRSS"))
    if spec["engine"] == "ours":
        res["config"] = _config_dict(eng.cfg)
        res["weight_dtype"] = eng.model.weight_dtype
    V = eng.vocab

    def guard(key, fn):
        note(key.replace("_", " "))
        try:
            fn()
        except NotImplementedError as e:
            res["skipped"][key] = str(e)
        except Exception as e:  # a peer failing must not sink the whole run
            res["errors"][key] = f"{type(e).__name__}: {e}"

    if "ttft" in parts:
        def ttft():
            ids = _tokens(cfg["ttft"], V, 1)[None]
            eng.prefill(ids[:, :8])  # warm-up
            _, dt = _timed(lambda: eng.prefill(ids))
            res["ttft"] = {"prompt_tokens": cfg["ttft"], "seconds": dt}
        guard("ttft", ttft)
    if "prefill" in parts:
        res["prefill"] = []
        for n in cfg["prefill"]:
            def pre(n=n):
                ids = _tokens(n, V, 2)[None]
                _, dt = _timed(lambda: eng.prefill(ids))
                res["prefill"].append({"tokens": n, "seconds": dt, "tokens_per_s": n / dt})
            guard(f"prefill_{n}", pre)
    if "decode" in parts:
        res["decode"] = []
        for b in cfg["batches"]:
            def dec(b=b):
                st = eng.prefill(_tokens(cfg["decode_prompt"] * b, V, 3).reshape(b, -1))
                r = _decode_rate(eng, st, b, cfg["decode_tokens"] + 1, 4)
                res["decode"].append({"batch": b, **r})
            guard(f"decode_b{b}", dec)
    if "position" in parts:
        res["position"] = []
        near, far = cfg["positions"]
        if eng.max_pos is not None and far > eng.max_pos - cfg["decode_tokens"] - 8:
            far = eng.max_pos - cfg["decode_tokens"] - 8
        source = _tokens(max(far, max(cfg["prefill"] + [near])), V, 5)

        def pos_near():
            st = eng.prefill(source[None, :near])
            r = _decode_rate(eng, st, 1, cfg["decode_tokens"] + 1, 6)
            res["position"].append({"position": near, "how": "prefilled", **r})
        guard(f"position_{near}", pos_near)

        def pos_far():
            # engines whose far state is built from a real prefill start from the largest one
            first = max(cfg["prefill"] + [near]) if eng.far_from_largest else near
            st = eng.prefill(source[None, :first])
            st = eng.place(st, far, source)
            if st is None:
                raise NotImplementedError(eng.far_note)
            r = _decode_rate(eng, st, 1, cfg["decode_tokens"] + 1, 6)
            res["position"].append({"position": far, "how": eng.far_note, **r})
        guard(f"position_{far}", pos_far)
    res["rss_end_bytes"] = _proc_status_bytes("VmRSS")
    res["rss_peak_self_bytes"] = _proc_status_bytes("VmHWM")
    return res


def _config_dict(c):
    import dataclasses

    d = dataclasses.asdict(c)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _echo_progress(path, shown, show):
    """Prints the lines the worker added to its progress file since the last call."""
    if not show or not os.path.exists(path):
        return shown
    with open(path) as f:
        f.seek(shown)
        new = f.read()
    if new:
        sys.stderr.write(new)
        sys.stderr.flush()
    return shown + len(new.encode())


def _run_child(spec, timeout):
    """Runs run_engine(spec) in a fresh interpreter; returns (result, peak RSS bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        prog = os.path.join(tmp, "progress.txt")
        spec = dict(spec, out=out, progress_file=prog)
        log = open(os.path.join(tmp, "log.txt"), "w+")
        shown = 0
        p = subprocess.Popen([sys.executable, "-m", "gemma_native.bench", "--_worker",
                              json.dumps(spec)], stdout=log, stderr=subprocess.STDOUT)
        deadline = _now() + timeout
        status, usage = 0, None
        while True:  # wait4 gives this child's own peak RSS (ru_maxrss, KiB on Linux)
            shown = _echo_progress(prog, shown, spec.get("show_progress"))
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if _now() > deadline:
                p.kill()
                _, status, usage = os.wait4(p.pid, 0)
                p.returncode = -9
                break
            time.sleep(0.05)
        _echo_progress(prog, shown, spec.get("show_progress"))
        peak = usage.ru_maxrss * 1024 if usage is not None else None
        if p.returncode == 0 and os.path.exists(out):
            with open(out) as f:
                res = json.load(f)
            # Linux carries ru_maxrss across fork+exec (it starts at the parent's RSS), so the
            # child's own VmHWM (reset by exec) is the figure; ru_maxrss is kept beside it.
            res["rusage_maxrss_bytes"] = peak
            return res, res.get("rss_peak_self_bytes") or peak
        log.seek(0)
        tail = log.read()[-1500:]
        why = "timed out" if p.returncode == -9 else f"exit code {p.returncode}"
        return {"engine": spec["engine"], "failed": f"{why}: {tail.strip()}"}, None


# ------------------------------------------------------------------------------------ ops
def _op_time(fn, reps):
    fn()
    best = math.inf
    for _ in range(reps):
        t0 = _now()
        fn()
        best = min(best, _now() - t0)
    return best


def measure_ops(c, settings):
    """Microbenchmarks of gemma_native.ops at the model's shapes (c: config dict)."""
    from . import ops
    from ._dtypes import f32_to_bf16_bits

    rng = np.random.default_rng(7)
    reps = settings["op_reps"]
    D, F = c["width"], c["mlp_width"]
    T = settings["prefill_t"]
    out = []

    def rec(name, shape, seconds, nbytes=None, flops=None):
        r = {"op": name, "shape": shape, "seconds": seconds}
        if nbytes is not None:
            r["bytes"] = nbytes
            r["gb_per_s"] = nbytes / seconds / 1e9
        if flops is not None:
            r["flops"] = flops
            r["gflop_per_s"] = flops / seconds / 1e9
        out.append(r)

    w = (f32_to_bf16_bits(rng.standard_normal((F, D), dtype=np.float32) / math.sqrt(D)),
         "bfloat16")
    w32 = rng.standard_normal((F, D), dtype=np.float32) / math.sqrt(D)
    x1 = rng.standard_normal((1, D), dtype=np.float32)
    xT = rng.standard_normal((T, D), dtype=np.float32)
    for label, wt, wb in (("bf16", w, 2), ("f32", w32, 4)):
        s = _op_time(lambda: ops.linear(x1, wt), reps)
        rec(f"linear decode GEMV {label}", [1, D, F], s, nbytes=F * D * wb + 4 * (D + F),
            flops=2 * D * F)
        s = _op_time(lambda: ops.linear(xT, wt), max(1, reps // 4))
        rec(f"linear prefill GEMM {label}", [T, D, F], s, flops=2 * T * D * F,
            nbytes=F * D * wb + 4 * T * (D + F))
    g = rng.standard_normal((T, F), dtype=np.float32)
    s = _op_time(lambda: ops.geglu(g, g), reps)
    rec("geglu", [T, F], s, nbytes=3 * 4 * T * F)
    nw = rng.standard_normal(D, dtype=np.float32) * 0.1
    s = _op_time(lambda: ops.rmsnorm(xT, nw), reps)
    rec("rmsnorm", [T, D], s, nbytes=2 * 4 * T * D)
    if c.get("architecture") == "recurrent_gemma":
        L = c["lru_width"]
        xs = rng.standard_normal((1, T, L), dtype=np.float32)
        ap = rng.standard_normal(L, dtype=np.float32)
        pos = np.arange(T, dtype=np.int32)[None]
        h = np.zeros((1, L), np.float32)
        s = _op_time(lambda: ops.rglru_scan(xs, xs, xs, ap, pos, h), reps)
        rec("rglru_scan", [1, T, L], s, nbytes=4 * 4 * T * L)
        window, kv, H, hd = c["attention_window_size"], c["num_kv_heads"], c["num_heads"], \
            c["head_dim"]
    else:
        window = c["sliding_window"] or min(c["max_position_embeddings"], 4096)
        kv, H, hd = c["num_kv_heads"], c["num_heads"], c["head_dim"]
    kc = rng.standard_normal((1, window, kv, hd), dtype=np.float32)
    vc = kc.copy()
    q = rng.standard_normal((1, 1, H, hd), dtype=np.float32)
    k = rng.standard_normal((1, 1, kv, hd), dtype=np.float32)
    cnt = np.array([window], np.int64)
    pos1 = np.array([[window]], np.int32)
    s = _op_time(lambda: ops.attention(q, k, k, pos1, window, hd ** -0.5, 0.0, kc, vc, cnt),
                 reps)
    rec("attention decode (full window)", [H, kv, window, hd], s, nbytes=2 * kc.nbytes)
    return out


def _matmul_params(c):
    """Weights multiplied per token in prefill (the logits GEMV runs once per prompt)."""
    arch = c["architecture"]
    if arch == "recurrent_gemma":
        D, L, F, H = c["width"], c["lru_width"], c["mlp_width"], c["num_heads"]
        hd, KV, bs = c["head_dim"], c["num_kv_heads"], c["lru_width"] // c["num_heads"]
        n = 0
        for kind in c["block_types"]:
            n += 3 * D * F
            n += (2 * L * D + D * L + 2 * H * bs * bs) if kind == "recurrent" else \
                (2 * H * hd * D + 2 * KV * hd * D)
        return n
    D, F, H, KV, hd = c["width"], c["mlp_width"], c["num_heads"], c["num_kv_heads"], \
        c["head_dim"]
    return c["num_layers"] * (3 * D * F + 2 * H * hd * D + 2 * KV * hd * D)


# ------------------------------------------------------------------------------------ report
def _ratios(report):
    lim = report.get("limits") or {}
    ours = report.get("ours") or {}
    bw = lim.get("bandwidth_bytes_per_s")
    peak = (lim.get("gemm_flops_per_s") or {}).get("numpy_fp32")
    r = {}
    wb = ours.get("weights_bytes")
    if bw and wb:
        r["decode_ceiling_tokens_per_s"] = bw / wb
        for d in ours.get("decode", []):
            r[f"decode_b{d['batch']}_vs_bandwidth_ceiling"] = d["steps_per_s"] * wb / bw
    rbw = lim.get("read_bandwidth_bytes_per_s")
    if rbw and wb:
        r["decode_read_ceiling_tokens_per_s"] = rbw / wb
        for d in ours.get("decode", []):
            r[f"decode_b{d['batch']}_vs_read_ceiling"] = d["steps_per_s"] * wb / rbw
    if peak and ours.get("config"):
        fl = 2 * _matmul_params(ours["config"])
        r["prefill_flops_per_token"] = fl
        for p in ours.get("prefill", []):
            r[f"prefill_{p['tokens']}_vs_gemm_peak"] = p["tokens_per_s"] * fl / peak
    pos = ours.get("position") or []
    if len(pos) == 2:
        r["decode_far_vs_near_position"] = pos[1]["tokens_per_s"] / pos[0]["tokens_per_s"]
    for name, peer in (report.get("peers") or {}).items():
        for key, a, b in _pairs(ours, peer):
            r[f"ours_vs_{name}_{key}"] = (b / a) if key.startswith("ttft") else (a / b)
    return r


def _pairs(ours, peer):
    """(metric key, ours value, peer value) for metrics both measured (higher = better except
    ttft seconds)."""
    out = []
    if "ttft" in ours and "ttft" in peer:
        out.append(("ttft", ours["ttft"]["seconds"], peer["ttft"]["seconds"]))
    for key, field, name in (("prefill", "tokens", "prefill_{}"), ("decode", "batch",
                                                                     "decode_b{}")):
        theirs = {d[field]: d for d in peer.get(key, [])}
        for d in ours.get(key, []):
            if d[field] in theirs:
                out.append((name.format(d[field]), d["tokens_per_s"],
                            theirs[d[field]]["tokens_per_s"]))
    theirs = {d["position"]: d for d in peer.get("position", [])}
    for d in ours.get("position", []):
        if d["position"] in theirs:
            out.append((f"position_{d['position']}", d["tokens_per_s"],
                        theirs[d["position"]]["tokens_per_s"]))
    return out


def _fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 1:
        return f"{v:.2f}{unit}"
    return f"{v:.3g}{unit}"


def print_summary(rep, file=sys.stdout):
    p = lambda *a: print(*a, file=file)  # noqa: E731
    m = rep["machine"]
    p(f"== gemma-native bench: {rep['model']} | {rep['backend'].get('cpu_isa')} | "
      f"{rep['threads']} threads | {m.get('cpu', '?')} | {'quick' if rep['quick'] else 'full'}")
    lim = rep.get("limits")
    if lim:
        g = lim["gemm_flops_per_s"]
        rbw = lim.get("read_bandwidth_bytes_per_s")
        p(f"machine: copy bandwidth {lim['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (2 threads; "
          f"1 thread {lim['bandwidth_1thread_bytes_per_s'] / 1e9:.1f})" +
          (f", read bandwidth {rbw / 1e9:.1f} GB/s (2 threads)" if rbw else "") + "; GEMM peak " +
          ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s (n={g.get(k + '_n', lim['gemm_n'])})"
                    for k, v in g.items() if not k.endswith("_n")) +
          "")
    ours = rep.get("ours") or {}
    if ours.get("failed"):
        p(f"ours FAILED: {ours['failed']}")
    elif ours:
        p(f"model: {ours.get('weight_dtype')} weights {ours['weights_bytes'] / 1e9:.2f} GB, "
          f"load {ours['load_seconds']:.1f} s, RSS after load "
          f"{(ours.get('rss_after_load_bytes') or 0) / 2**20:,.0f} MiB, peak RSS "
          f"{(ours.get('peak_rss_bytes') or 0) / 2**20:,.0f} MiB")
    engines = [("ours", ours)] + [(k, v) for k, v in (rep.get("peers") or {}).items()]
    rows = _table_rows(engines)
    if rows:
        if len(engines) > 1:
            p("(ours vs peer: >1x means ours is better: faster, or less time / memory)")
        names = [n for n, _ in engines]
        w0 = max(len(r[0]) for r in rows) + 2
        wv = [max(12, len(n) + 2) for n in names]
        wr = [len(f"ours vs {n}") + 2 for n in names[1:]]
        p("")
        p("metric".ljust(w0) + "".join(n.rjust(w) for n, w in zip(names, wv)) +
          "".join(f"ours vs {n}".rjust(w) for n, w in zip(names[1:], wr)))
        for label, vals, ratios in rows:
            p(label.ljust(w0) + "".join(_fmt(v).rjust(w) for v, w in zip(vals, wv)) +
              "".join(((_fmt(x) + "x") if x else "-").rjust(w) for x, w in zip(ratios, wr)))
    r = rep.get("ratios") or {}
    if r:
        p("")
        if "decode_ceiling_tokens_per_s" in r:
            p(f"decode ceiling (bandwidth / weight bytes): "
              f"{r['decode_ceiling_tokens_per_s']:.2f} steps/s; reached: " +
              ", ".join(f"{k.split('_')[1]} {v:.0%}" for k, v in r.items()
                        if k.endswith("_vs_bandwidth_ceiling")))
        if "decode_read_ceiling_tokens_per_s" in r:
            p(f"decode read ceiling (read bandwidth / weight bytes): "
              f"{r['decode_read_ceiling_tokens_per_s']:.2f} steps/s; reached: " +
              ", ".join(f"{k.split('_')[1]} {v:.0%}" for k, v in r.items()
                        if k.endswith("_vs_read_ceiling")))
        pre = [(k, v) for k, v in r.items() if k.endswith("_vs_gemm_peak")]
        if pre:
            p("prefill FLOP/s vs numpy fp32 GEMM peak: " +
              ", ".join(f"{k.split('_')[1]} tok {v:.0%}" for k, v in pre))
        if "decode_far_vs_near_position" in r:
            pos = ours["position"]
            p(f"decode at position {pos[1]['position']} / at {pos[0]['position']}: "
              f"{r['decode_far_vs_near_position']:.2f} ({pos[1]['how']})")
    if rep.get("ops"):
        p("")
        p("op".ljust(34) + "shape".ljust(26) + "us".rjust(10) + "GB/s".rjust(9) +
          "GFLOP/s".rjust(9))
        for o in rep["ops"]:
            p(o["op"].ljust(34) + str(o["shape"]).ljust(26) + f"{o['seconds'] * 1e6:10.1f}" +
              _fmt(o.get("gb_per_s")).rjust(9) + _fmt(o.get("gflop_per_s")).rjust(9))
    for name, e in engines:
        for k, v in (e.get("errors") or {}).items():
            p(f"{name}: {k} error: {v}")
        for k, v in (e.get("skipped") or {}).items():
            p(f"{name}: {k} skipped: {v}")
        if name != "ours" and e.get("failed"):
            p(f"{name}: FAILED: ...{e['failed'][-700:]}")
    for k, v in (rep.get("peers_skipped") or {}).items():
        p(f"peer {k} not run: {v}")


def _table_rows(engines):
    ours = engines[0][1]
    rows = []

    def add(label, getter, higher_better=True):
        vals = [getter(e) for _, e in engines]
        if all(v is None for v in vals):
            return
        ratios = []
        for v in vals[1:]:
            a = vals[0]
            ratios.append(None if a is None or v is None or v == 0 or a == 0 or
                          higher_better is None else (a / v if higher_better else v / a))
        rows.append((label, vals, ratios))

    def find(key, field, val, out="tokens_per_s"):
        return lambda e: next((d[out] for d in e.get(key, []) if d[field] == val), None)

    add("ttft (s)", lambda e: (e.get("ttft") or {}).get("seconds"), higher_better=False)
    for n in [d["tokens"] for d in ours.get("prefill", [])]:
        add(f"prefill {n} tok/s", find("prefill", "tokens", n))
    for b in [d["batch"] for d in ours.get("decode", [])]:
        add(f"decode batch {b} tok/s", find("decode", "batch", b))
    for pos in [d["position"] for d in ours.get("position", [])]:
        add(f"decode @pos {pos} tok/s", find("position", "position", pos))
    add("weights (GB)", lambda e: (e.get("weights_bytes") or 0) / 1e9 or None,
        higher_better=None)
    add("load (s)", lambda e: e.get("load_seconds"), higher_better=False)
    add("peak RSS (MiB)", lambda e: (e.get("peak_rss_bytes") or 0) / 2**20 or None,
        higher_better=False)
    return rows


# ------------------------------------------------------------------------------------ main
def _peer_plan(model, ours_cfg, args):
    """{peer: spec fields or a reason string} for the asked peers."""
    wanted = PEERS if args.peers == "all" else () if args.peers == "none" else tuple(
        x.strip() for x in args.peers.split(",") if x.strip())
    plan = {}
    is_gguf = model.lower().endswith(".gguf")
    arch = (ours_cfg or {}).get("architecture")
    for name in wanted:
        if name == "official":
            if arch != "recurrent_gemma" or not model.startswith("random:"):
                plan[name] = "only for random:recurrentgemma-* (random weights at the shape)"
            elif not _has("recurrentgemma") or not _has("torch"):
                plan[name] = "recurrentgemma / torch not installed"
            else:
                plan[name] = {}
        elif name == "transformers":
            if not _has("transformers") or not _has("torch"):
                plan[name] = "transformers / torch not installed"
            elif ours_cfg is None:
                plan[name] = "needs our model's config (run without --only or include decode)"
            else:
                hf = model if os.path.isdir(model) else None
                plan[name] = {"hf_path": hf}
        elif name == "llama.cpp":
            gguf = args.gguf or (model if is_gguf else None)
            if gguf is None:
                plan[name] = "needs a .gguf model (or --gguf FILE)"
            elif not _has("llama_cpp"):
                plan[name] = "llama-cpp-python not installed"
            else:
                plan[name] = {"gguf": os.path.abspath(gguf)}
        else:
            plan[name] = f"unknown peer (known: {', '.join(PEERS)})"
    return plan


def _has(mod):
    import importlib.util

    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _model_config(model, dtype):
    from . import load
    from .random_model import preset_config

    if model.startswith("random:"):
        return _config_dict(preset_config(model[len("random:"):], dtype or "bfloat16"))
    return _config_dict(load(model, dtype=dtype).config)


def run(args) -> dict:
    import gemma_native as gn

    from .errors import InvalidArgumentError

    parts = PARTS if args.only in (None, "all") else tuple(
        x.strip() for x in args.only.split(",") if x.strip())
    bad = [x for x in parts if x not in PARTS]
    if bad:
        raise InvalidArgumentError(f"unknown part(s) {bad}; known: {', '.join(PARTS)}")
    if args.threads is not None:
        gn.set_num_threads(args.threads)
    threads = gn.backend_info()["num_threads"]
    settings = dict(QUICK if args.quick else FULL)
    def ints(text, what):
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise InvalidArgumentError(f"{what} takes comma-separated integers, got "
                                       f"{text!r}") from None

    if args.prefill:
        settings["prefill"] = ints(args.prefill, "--prefill")
    if args.decode_tokens:
        settings["decode_tokens"] = args.decode_tokens
    if args.peer_prefill:
        settings["peer_prefill"] = ints(args.peer_prefill, "--peer-prefill")
    if args.peer_decode_tokens:
        settings["peer_decode_tokens"] = args.peer_decode_tokens
    if args.positions:
        settings["positions"] = ints(args.positions, "--positions")
        if len(settings["positions"]) != 2:
            raise InvalidArgumentError("--positions takes two numbers: near,far")
    if not settings["prefill"] or not settings["peer_prefill"] or min(
            settings["prefill"] + settings["positions"] + settings["peer_prefill"] +
            [settings["decode_tokens"], settings["peer_decode_tokens"]]) < 1:
        raise InvalidArgumentError("token counts and positions must be >= 1")
    model = args.model
    if not model.startswith("random:") and not os.path.exists(model):
        from .errors import ModelNotFoundError
        raise ModelNotFoundError(f"no such model path: {model}")
    if model.startswith("random:"):
        from .random_model import preset_config
        preset_config(model[len("random:"):])  # unknown preset -> clear error now
    rep = {"model": model, "quick": bool(args.quick), "parts": list(parts), "threads": threads,
           "settings": settings, "machine": _machine(), "backend": gn.backend_info(),
           "versions": {k: _version(k) for k in ("gemma_native", "numpy", "torch",
                                                  "transformers", "recurrentgemma",
                                                  "llama_cpp_python")},
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.progress else \
        (lambda *a: None)
    if "limits" in parts:
        say("[bench] machine limits ...")
        rep["limits"] = measure_limits(settings, threads)
    model_parts = [x for x in ("prefill", "ttft", "decode", "position") if x in parts]
    spec = {"model": model, "dtype": args.dtype, "threads": threads, "parts": model_parts,
            "settings": settings, "peer_dtype": args.peer_dtype, "show_progress": args.progress}
    ours_cfg = None
    if model_parts or "peers" in parts or "ops" in parts:
        say("[bench] ours ...")
        res, peak = _run_child(dict(spec, engine="ours"), args.timeout)
        res["peak_rss_bytes"] = peak
        rep["ours"] = res
        ours_cfg = res.get("config")
    if "ops" in parts:
        say("[bench] ops ...")
        c = ours_cfg or _model_config(model, args.dtype)
        rep["ops"] = measure_ops(c, settings)
    if "peers" in parts:
        rep["peers"], rep["peers_skipped"] = {}, {}
        need_ctx = max(settings["prefill"] + settings["positions"] + [settings["ttft"]]) + \
            settings["decode_tokens"] + 64
        for name, plan in _peer_plan(model, ours_cfg, args).items():
            if isinstance(plan, str):
                rep["peers_skipped"][name] = plan
                continue
            say(f"[bench] peer {name} ...")
            peer_settings = dict(settings, prefill=settings["peer_prefill"],
                                 decode_tokens=settings["peer_decode_tokens"])
            pspec = dict(spec, engine=name, config=ours_cfg, n_ctx=need_ctx,
                         settings=peer_settings, **plan)
            res, peak = _run_child(pspec, args.timeout)
            res["peak_rss_bytes"] = peak
            rep["peers"][name] = res
    rep["ratios"] = _ratios(rep)
    rep["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return rep


def add_arguments(p):
    p.add_argument("model", help="model folder, .gguf file, or random:PRESET (e.g. "
                   "random:recurrentgemma-2b, random:gemma3-270m)")
    p.add_argument("--quick", action="store_true",
                   help="few tokens and small sizes (seconds, for a smoke test)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated parts to run: {','.join(PARTS)} (default: all)")
    p.add_argument("--peers", default="all",
                   help=f"none, all, or a comma list of {','.join(PEERS)} (default: all that "
                   "are installed and apply)")
    p.add_argument("--json", default=None, metavar="FILE", help="write every measurement, "
                   "ratio, version and machine fact to FILE")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for ours and every peer (default: gemma_native's default)")
    p.add_argument("--dtype", default=None, help="our weight dtype (default: bfloat16 for "
                   "random:, as stored for files)")
    p.add_argument("--peer-dtype", default="bfloat16",
                   help="torch peers' dtype: bfloat16 (default), float32, float16")
    p.add_argument("--gguf", default=None, help="GGUF file for the llama.cpp peer when the "
                   "model is not one")
    p.add_argument("--prefill", default=None, help="prefill sizes, e.g. 128,512,2048")
    p.add_argument("--decode-tokens", type=int, default=None, help="timed decode steps")
    p.add_argument("--peer-prefill", default=None, help="prefill sizes for the peers (default "
                   "128 full, as ours with --quick)")
    p.add_argument("--peer-decode-tokens", type=int, default=None,
                   help="timed decode steps for the peers (default 8 full, 4 quick)")
    p.add_argument("--positions", default=None, help="near,far decode positions "
                   "(default 100,10000)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds allowed per subprocess (ours, each peer)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="do not print progress lines to stderr")


def cmd_bench(args) -> int:
    rep = run(args)
    print_summary(rep)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=2, default=str)
    failed = (rep.get("ours") or {}).get("failed")
    return 1 if failed else 0


def _worker(spec_json):
    spec = json.loads(spec_json)
    res = run_engine(spec)
    with open(spec["out"], "w") as f:
        json.dump(res, f, default=str)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_worker"]:
        _worker(argv[1])
        return 0
    from .cli import main as cli_main

    return cli_main(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())

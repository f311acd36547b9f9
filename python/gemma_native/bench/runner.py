"""One bench run, on the parent's side: the command-line options turned into settings, the
plan of which peers can run, then every part in order (limits and ops in this process, ours
and each peer in a child process of their own) gathered into one report dict."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import gemma_native as gn
from gemma_native.random_model import parse_model_spec, preset_config

from . import report
from .harness import config_dict, run_child
from .opbench import measure_ops
from .probes import core_peaks, dist_version, machine, measure_limits

PARTS = ("limits", "prefill", "ttft", "decode", "position", "ops", "peers")
PEERS = ("official", "transformers", "llama.cpp")

# The torch peers run bf16 on CPUs without bf16 hardware at ~10 GFLOP/s (a 2048-token prefill
# of a 2B model would take 20 minutes), so by default they get fewer prefill sizes and decode
# steps (--peer-prefill / --peer-decode-tokens change it); the ratios compare equal sizes only.
FULL = dict(prefill=[128, 512, 2048], ttft=128, decode_prompt=16, decode_tokens=32,
            batches=[1, 4], positions=[100, 10000], bw_bytes=1 << 30, gemm_n=2048,
            op_reps=20, prefill_t=512, peer_prefill=[128], peer_decode_tokens=8,
            probe_bytes=1 << 28)
QUICK = dict(prefill=[16, 64], ttft=16, decode_prompt=8, decode_tokens=4, batches=[1, 4],
             positions=[16, 200], bw_bytes=1 << 27, gemm_n=384, op_reps=3, prefill_t=32,
             peer_prefill=[16, 64], peer_decode_tokens=4, probe_bytes=1 << 24)


def parts_from(only) -> tuple:
    """The parts named by --only (None or "all": every part); InvalidArgumentError for unknown
    names."""
    parts = PARTS if only in (None, "all") else tuple(
        x.strip() for x in only.split(",") if x.strip())
    bad = [x for x in parts if x not in PARTS]
    if bad:
        raise gn.InvalidArgumentError(f"unknown part(s) {bad}; known: {', '.join(PARTS)}")
    return parts


def _ints(text, what):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise gn.InvalidArgumentError(f"{what} takes comma-separated integers, got "
                                      f"{text!r}") from None


def settings_from(args) -> dict:
    """FULL or QUICK, with the sizes the options override, checked."""
    settings = dict(QUICK if args.quick else FULL)
    if args.prefill:
        settings["prefill"] = _ints(args.prefill, "--prefill")
    if args.decode_tokens:
        settings["decode_tokens"] = args.decode_tokens
    if args.peer_prefill:
        settings["peer_prefill"] = _ints(args.peer_prefill, "--peer-prefill")
    if args.peer_decode_tokens:
        settings["peer_decode_tokens"] = args.peer_decode_tokens
    if args.positions:
        settings["positions"] = _ints(args.positions, "--positions")
        if len(settings["positions"]) != 2:
            raise gn.InvalidArgumentError("--positions takes two numbers: near,far")
    counts = settings["prefill"] + settings["positions"] + settings["peer_prefill"] + \
        [settings["decode_tokens"], settings["peer_decode_tokens"]]
    if not settings["prefill"] or not settings["peer_prefill"] or min(counts) < 1:
        raise gn.InvalidArgumentError("token counts and positions must be >= 1")
    return settings


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def peer_plan(model: str, ours_cfg, args) -> dict:
    """{peer: spec fields to run it with, or the reason it does not run} for the asked peers."""
    wanted = PEERS if args.peers == "all" else () if args.peers == "none" else tuple(
        x.strip() for x in args.peers.split(",") if x.strip())
    plan = {}
    arch = (ours_cfg or {}).get("architecture")
    for name in wanted:
        if name == "official":
            if arch != "recurrent_gemma" or parse_model_spec(model) is None:
                plan[name] = "only for random:recurrentgemma-* (random weights at the shape)"
            elif not has_module("recurrentgemma") or not has_module("torch"):
                plan[name] = "recurrentgemma / torch not installed"
            else:
                plan[name] = {}
        elif name == "transformers":
            if not has_module("transformers") or not has_module("torch"):
                plan[name] = "transformers / torch not installed"
            elif ours_cfg is None:
                plan[name] = "needs our model's config (run without --only or include decode)"
            else:
                plan[name] = {"hf_path": model if os.path.isdir(model) else None}
        elif name == "llama.cpp":
            gguf = args.gguf or (model if model.lower().endswith(".gguf") else None)
            if gguf is None:
                plan[name] = "needs a .gguf model (or --gguf FILE)"
            elif not has_module("llama_cpp"):
                plan[name] = "llama-cpp-python not installed"
            else:
                plan[name] = {"gguf": os.path.abspath(gguf)}
        else:
            plan[name] = f"unknown peer (known: {', '.join(PEERS)})"
    return plan


def _model_config(model: str, dtype) -> dict:
    """The config of a model spec; for random:PRESET without building its weights."""
    preset = parse_model_spec(model)
    if preset is not None:
        return config_dict(preset_config(preset, dtype or "bfloat16"))
    return config_dict(gn.load(model, dtype=dtype).config)


def run(args) -> dict:
    """Runs the parts asked by the parsed options and returns the report (see report.py for
    what is printed from it)."""
    parts = parts_from(args.only)
    if args.threads is not None:
        gn.set_num_threads(args.threads)
    threads = gn.backend_info()["num_threads"]
    settings = settings_from(args)
    model = args.model
    # an unknown preset or a missing path is a clear error now, not in a child
    if parse_model_spec(model) is None and not os.path.exists(model):
        raise gn.ModelNotFoundError(f"no such model path: {model}")
    rep = {"model": model, "quick": bool(args.quick), "parts": list(parts), "threads": threads,
           "settings": settings, "machine": machine(), "backend": gn.backend_info(),
           "versions": {"gemma_native": gn.__version__,  # the imported code's, installed or not
                        **{k: dist_version(k) for k in ("numpy", "torch", "transformers",
                                                        "recurrentgemma", "llama_cpp_python")}},
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.progress else \
        (lambda *a: None)
    if "limits" in parts:
        say("[bench] machine limits ...")
        rep["limits"] = measure_limits(settings, threads)
    model_parts = [x for x in ("prefill", "ttft", "decode", "position") if x in parts]
    spec = {"model": model, "dtype": args.dtype, "activations": args.activations,
            "pack_weights": {"auto": None, "yes": True, "no": False}[getattr(args, "pack_weights", "auto")],
            "threads": threads, "parts": model_parts,
            "settings": settings, "peer_dtype": args.peer_dtype, "show_progress": args.progress}
    ours_cfg = None
    if model_parts or "peers" in parts or "ops" in parts:
        say("[bench] ours ...")
        res, peak = run_child(dict(spec, engine="ours"), args.timeout)
        res["peak_rss_bytes"] = peak
        rep["ours"] = res
        ours_cfg = res.get("config")
    if "limits" in parts and "ours" in rep:
        # The cores' peaks once more, after our run: a loop run by a CPU just out of idle can
        # read well below its clock, which would flatter every prefill ratio; the higher of the
        # two runs is the ceiling.
        lim = rep["limits"]
        again = core_peaks(threads)
        lim["core_peak_runs_flops_per_s"] = [lim["core_peak_flops_per_s"], again]
        lim["core_peak_flops_per_s"] = {k: max(v, again.get(k, 0.0))
                                        for k, v in lim["core_peak_flops_per_s"].items()}
    if "ops" in parts:
        say("[bench] ops ...")
        rep["ops"] = measure_ops(ours_cfg or _model_config(model, args.dtype), settings)
    if "peers" in parts:
        rep["peers"], rep["peers_skipped"] = {}, {}
        need_ctx = max(settings["prefill"] + settings["positions"] + [settings["ttft"]]) + \
            settings["decode_tokens"] + 64
        peer_settings = dict(settings, prefill=settings["peer_prefill"],
                             decode_tokens=settings["peer_decode_tokens"])
        for name, plan in peer_plan(model, ours_cfg, args).items():
            if isinstance(plan, str):
                rep["peers_skipped"][name] = plan
                continue
            say(f"[bench] peer {name} ...")
            pspec = dict(spec, engine=name, config=ours_cfg, n_ctx=need_ctx,
                         settings=peer_settings, **plan)
            res, peak = run_child(pspec, args.timeout)
            res["peak_rss_bytes"] = peak
            rep["peers"][name] = res
    rep["ratios"] = report.ratios(rep)
    rep["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return rep

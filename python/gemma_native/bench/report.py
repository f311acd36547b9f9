"""The report: ratios computed from the measurements (against the machine's limits and ours
against each peer), the printed summary, and the JSON file."""

from __future__ import annotations

import json
import statistics
import sys


def matmul_params(c: dict) -> int:
    """Weights multiplied per token in prefill, from a config dict (the logits GEMV runs once
    per prompt, so the embedding is not counted)."""
    if c["architecture"] == "recurrent_gemma":
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


def ratios(report: dict) -> dict:
    """Decode against the bandwidth ceilings, prefill against the GEMM peak, far against near
    position, and ours against each peer (``ours_vs_<peer>_<metric>``: > 1 means ours is
    better)."""
    lim = report.get("limits") or {}
    ours = report.get("ours") or {}
    r = {}
    wb = ours.get("weights_bytes")
    for bw_key, ceiling_key, suffix in (
            ("bandwidth_bytes_per_s", "decode_ceiling_tokens_per_s", "bandwidth_ceiling"),
            ("read_bandwidth_bytes_per_s", "decode_read_ceiling_tokens_per_s", "read_ceiling")):
        bw = lim.get(bw_key)
        if bw and wb:
            r[ceiling_key] = bw / wb
            for d in ours.get("decode", []):
                r[f"decode_b{d['batch']}_vs_{suffix}"] = d["steps_per_s"] * wb / bw
    r.update(_decode_rounds_ratios(ours.get("decode", []), wb))
    peak = (lim.get("gemm_flops_per_s") or {}).get("numpy_fp32")
    if peak and ours.get("config"):
        fl = 2 * matmul_params(ours["config"])
        r["prefill_flops_per_token"] = fl
        for p in ours.get("prefill", []):
            r[f"prefill_{p['tokens']}_vs_gemm_peak"] = p["tokens_per_s"] * fl / peak
    key = core_peak_key(ours.get("compute_mode"), (report.get("backend") or {}).get("cpu_isa"))
    core = (lim.get("core_peak_flops_per_s") or {}).get(key)
    if core and ours.get("config"):
        fl = 2 * matmul_params(ours["config"])
        r["core_peak_used"], r["core_peak_flops_per_s"] = key, core
        for p in ours.get("prefill", []):
            r[f"prefill_{p['tokens']}_vs_core_peak"] = p["tokens_per_s"] * fl / core
    pos = ours.get("position") or []
    if len(pos) == 2:
        r["decode_far_vs_near_position"] = pos[1]["tokens_per_s"] / pos[0]["tokens_per_s"]
    for name, peer in (report.get("peers") or {}).items():
        for key, a, b in _pairs(ours, peer):
            r[f"ours_vs_{name}_{key}"] = (b / a) if key.startswith("ttft") else (a / b)
    return r


def core_peak_key(compute_mode, cpu_isa):
    """The core peak (limits' core_peak_flops_per_s key) that bounds our prefill's products:
    VDPBF16PS for the bf16 mode on AVX512-BF16, VPDPBUSD for int8 activations, the FMA of the
    kernel set's width for float32; None where nothing measured applies (AMX, scalar)."""
    mode, isa = compute_mode or "", cpu_isa or ""
    if mode.startswith("bfloat16"):
        return "bf16_dot_512" if "(avx512bf16;" in mode else None  # not the emulated one
    if mode.startswith("int8"):
        if "AMX-INT8" in mode:  # no measured peak for the tiles (or their emulation)
            return None
        return "int8_dot_512" if isa == "avx512vnni" else None
    if isa.startswith("avx512"):
        return "fp32_fma_512"
    return "fp32_fma_256" if isa == "avx2" else None


def _decode_rounds_ratios(decode, wb) -> dict:
    """From decode timed in rounds (harness.py): each batch against the read rate measured
    beside its chunks (weight bytes x steps/s of a chunk over the mean of the reads before and
    after it; median over chunks), and each batch against batch 1 of the same round (tokens/s;
    median over rounds)."""
    r = {}
    chunked = {d["batch"]: d["chunks"] for d in decode if d.get("chunks")}
    for b, chunks in chunked.items():
        if wb:
            r[f"decode_b{b}_vs_adjacent_read"] = statistics.median(
                c["steps"] / c["seconds"] * wb /
                ((c["read_before_bytes_per_s"] + c["read_after_bytes_per_s"]) / 2)
                for c in chunks)
        if b != 1 and len(chunked.get(1, [])) == len(chunks):
            r[f"decode_b{b}_vs_b1_same_rounds"] = statistics.median(
                (b * c["steps"] / c["seconds"]) / (c1["steps"] / c1["seconds"])
                for c, c1 in zip(chunks, chunked[1]))
    return r


def _pairs(ours, peer):
    """(metric key, ours value, peer value) for the metrics both measured (higher is better,
    except ttft seconds)."""
    out = []
    if "ttft" in ours and "ttft" in peer:
        out.append(("ttft", ours["ttft"]["seconds"], peer["ttft"]["seconds"]))
    for key, field, name in (("prefill", "tokens", "prefill_{}"),
                             ("decode", "batch", "decode_b{}"),
                             ("position", "position", "position_{}")):
        theirs = {d[field]: d for d in peer.get(key, [])}
        for d in ours.get(key, []):
            if d[field] in theirs:
                out.append((name.format(d[field]), d["tokens_per_s"],
                            theirs[d[field]]["tokens_per_s"]))
    return out


def fmt(v, unit=""):
    """A number for a table cell: '-' for None, 3 significant digits or a thousands comma."""
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 1:
        return f"{v:.2f}{unit}"
    return f"{v:.3g}{unit}"


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=str)


def print_summary(rep: dict, file=None) -> None:
    """The human-readable report: header, machine limits, our model, the table of ours and the
    peers, ratios, the op microbenchmarks, then every error, skip and failure."""
    out = sys.stdout if file is None else file
    p = lambda *a: print(*a, file=out)  # noqa: E731
    m = rep["machine"]
    mpt = rep["backend"].get("max_pass_tokens")
    passes = "" if mpt is None else f"passes of <= {mpt} rows | " if mpt else "one pass | "
    p(f"== gemma-native bench: {rep['model']} | {rep['backend'].get('cpu_isa')} | "
      f"{rep['threads']} threads | {passes}{m.get('cpu', '?')} | "
      f"{'quick' if rep['quick'] else 'full'}")
    lim = rep.get("limits")
    if lim:
        p(_limits_line(lim))
    ours = rep.get("ours") or {}
    if ours.get("failed"):
        p(f"ours FAILED: {ours['failed']}")
    elif ours:
        layouts = ours.get("weight_layouts")
        p(f"model: {ours.get('weight_dtype')} weights"
          f"{' (in memory: ' + ', '.join(layouts) + ')' if layouts else ''}, "
          f"compute {ours.get('compute_mode')}, "
          f"{ours['weights_bytes'] / 1e9:.2f} GB, "
          f"load {ours['load_seconds']:.1f} s, RSS after load "
          f"{(ours.get('rss_after_load_bytes') or 0) / 2**20:,.0f} MiB, peak RSS "
          f"{(ours.get('peak_rss_bytes') or 0) / 2**20:,.0f} MiB")
    engines = [("ours", ours)] + list((rep.get("peers") or {}).items())
    _print_table(p, engines)
    _print_ratios(p, rep.get("ratios") or {}, ours)
    if rep.get("ops"):
        p("")
        p("op".ljust(34) + "shape".ljust(26) + "us".rjust(10) + "GB/s".rjust(9) +
          "GFLOP/s".rjust(9))
        for o in rep["ops"]:
            p(o["op"].ljust(34) + str(o["shape"]).ljust(26) + f"{o['seconds'] * 1e6:10.1f}" +
              fmt(o.get("gb_per_s")).rjust(9) + fmt(o.get("gflop_per_s")).rjust(9))
    for name, e in engines:
        for k, v in (e.get("errors") or {}).items():
            p(f"{name}: {k} error: {v}")
        for k, v in (e.get("skipped") or {}).items():
            p(f"{name}: {k} skipped: {v}")
        if name != "ours" and e.get("failed"):
            p(f"{name}: FAILED: ...{e['failed'][-700:]}")
    for k, v in (rep.get("peers_skipped") or {}).items():
        p(f"peer {k} not run: {v}")


def _limits_line(lim):
    g = lim["gemm_flops_per_s"]
    rbw = lim.get("read_bandwidth_bytes_per_s")
    peaks = ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s (n={g.get(k + '_n', lim['gemm_n'])})"
                      for k, v in g.items() if not k.endswith("_n"))
    return (f"machine: copy bandwidth {lim['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (2 threads; "
            f"1 thread {lim['bandwidth_1thread_bytes_per_s'] / 1e9:.1f})" +
            (f", read bandwidth {rbw / 1e9:.1f} GB/s (2 threads{_probes(lim)})" if rbw else "") +
            "; GEMM peak " + peaks + _core_line(lim.get("core_peak_flops_per_s")))


def _probes(lim):
    probes = lim.get("read_bandwidth_probes_bytes_per_s") or {}
    if len(probes) < 2:
        return ""
    return "; the faster of " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in sorted(probes.items()))


def _core_line(core):
    if not core:
        return ""
    return "; core peak (register loops) " + ", ".join(
        f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in sorted(core.items()))


def _print_table(p, engines):
    rows = _table_rows(engines)
    if not rows:
        return
    if len(engines) > 1:
        p("(ours vs peer: >1x means ours is better: faster, or less time / memory)")
    names = [n for n, _ in engines]
    w0 = max(len(r[0]) for r in rows) + 2
    wv = [max(12, len(n) + 2) for n in names]
    wr = [len(f"ours vs {n}") + 2 for n in names[1:]]
    p("")
    p("metric".ljust(w0) + "".join(n.rjust(w) for n, w in zip(names, wv)) +
      "".join(f"ours vs {n}".rjust(w) for n, w in zip(names[1:], wr)))
    for label, vals, rel in rows:
        p(label.ljust(w0) + "".join(fmt(v).rjust(w) for v, w in zip(vals, wv)) +
          "".join(((fmt(x) + "x") if x else "-").rjust(w) for x, w in zip(rel, wr)))


def _table_rows(engines):
    """[(label, [value per engine], [ours / peer per peer, or None])] for the metrics any
    engine measured; the ratio is flipped for metrics where less is better."""
    ours = engines[0][1]
    rows = []

    def add(label, getter, higher_better=True):
        vals = [getter(e) for _, e in engines]
        if all(v is None for v in vals):
            return
        a = vals[0]
        rel = [None if a is None or v is None or v == 0 or a == 0 or higher_better is None
               else (a / v if higher_better else v / a) for v in vals[1:]]
        rows.append((label, vals, rel))

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


def _print_ratios(p, r, ours):
    if not r:
        return
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
    near = [(k, v) for k, v in r.items() if k.endswith("_vs_adjacent_read")]
    if near:
        reads = [c[f"read_{w}_bytes_per_s"] for d in ours.get("decode", [])
                 for c in d.get("chunks", []) for w in ("before", "after")]
        p(f"decode vs the read rate measured beside it ({min(reads) / 1e9:.1f}-"
          f"{max(reads) / 1e9:.1f} GB/s; median of chunks): " +
          ", ".join(f"{k.split('_')[1]} {v:.0%}" for k, v in near))
    same = [(k, v) for k, v in r.items() if k.endswith("_vs_b1_same_rounds")]
    if same:
        p("decode batch b / batch 1 in the same rounds (tokens/s; median of rounds): " +
          ", ".join(f"{k.split('_')[1]} {v:.2f}x" for k, v in same))
    pre = [(k, v) for k, v in r.items() if k.endswith("_vs_gemm_peak")]
    if pre:
        p("prefill FLOP/s vs numpy fp32 GEMM peak: " +
          ", ".join(f"{k.split('_')[1]} tok {v:.0%}" for k, v in pre))
    pre = [(k, v) for k, v in r.items() if k.endswith("_vs_core_peak")]
    if pre:
        p(f"prefill FLOP/s vs core peak ({r['core_peak_used']}, "
          f"{r['core_peak_flops_per_s'] / 1e9:.0f} GFLOP/s): " +
          ", ".join(f"{k.split('_')[1]} tok {v:.0%}" for k, v in pre))
    if "decode_far_vs_near_position" in r:
        pos = ours["position"]
        p(f"decode at position {pos[1]['position']} / at {pos[0]['position']}: "
          f"{r['decode_far_vs_near_position']:.2f} ({pos[1]['how']})")

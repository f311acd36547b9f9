"""gemma-native bench: runs --quick on tiny random models and checks what it reports: the JSON
structure, every measurement present, finite and positive, the ratios consistent with the
measurements they come from, and clean errors for bad arguments.  Speed is never asserted."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys

import pytest

from gemma_native.bench.report import core_peak_key

TIMEOUT = 120


# the two ways to start it: the gemma-native command, and the bench package as a module
ENTRY_POINTS = {"cli": ["-m", "gemma_native.cli", "bench"], "module": ["-m", "gemma_native.bench"]}


def bench(*args, cwd=None, entry="cli"):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, *ENTRY_POINTS[entry], *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd)


def pos(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def run_quick(tmp_path, preset, *extra):
    out = tmp_path / "out.json"
    r = bench(f"random:{preset}", "--quick", "--json", out, *extra)
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(out.read_text()), r.stdout


def check_engine(e, settings, griffin):
    assert "failed" not in e, e.get("failed")
    assert e["errors"] == {}, e["errors"]
    for key in ("load_seconds", "weights_bytes", "peak_rss_bytes", "rss_after_load_bytes"):
        assert pos(e[key]), key
    assert pos(e["ttft"]["seconds"]) and e["ttft"]["prompt_tokens"] == settings["ttft"]
    assert [p["tokens"] for p in e["prefill"]] == settings["prefill"]
    for p in e["prefill"]:
        assert pos(p["seconds"]) and pos(p["tokens_per_s"])
        assert math.isclose(p["tokens_per_s"], p["tokens"] / p["seconds"], rel_tol=1e-9)
        assert 1 <= p["runs"] <= 3
    assert [d["batch"] for d in e["decode"]] == settings["batches"]
    for d in e["decode"]:
        assert d["steps"] == settings["decode_tokens"]
        assert pos(d["tokens_per_s"]) and math.isclose(
            d["tokens_per_s"], d["batch"] * d["steps_per_s"], rel_tol=1e-9)
        if e["engine"] == "ours":  # timed in rounds, each chunk between two reads
            chunks = d["chunks"]
            assert len(chunks) == min(4, settings["decode_tokens"])
            assert sum(c["steps"] for c in chunks) == d["steps"]
            assert math.isclose(sum(c["seconds"] for c in chunks), d["seconds"], rel_tol=1e-9)
            assert all(pos(c["read_before_bytes_per_s"]) and pos(c["read_after_bytes_per_s"])
                       for c in chunks)
    if e["engine"] == "ours" and len(e["decode"]) > 1:
        # the rounds alternate batches: the read after a chunk is the read before the next
        first, second = e["decode"][0]["chunks"], e["decode"][1]["chunks"]
        assert first[0]["read_after_bytes_per_s"] == second[0]["read_before_bytes_per_s"]
    assert [p["position"] for p in e["position"]] == settings["positions"]
    assert all(pos(p["tokens_per_s"]) for p in e["position"])
    how = e["position"][1]["how"]
    assert ("relabelled" in how) if griffin else ("prefilled" in how)
    # the peak is at least what was resident after loading
    assert e["peak_rss_bytes"] >= e["rss_after_load_bytes"] * 0.99


@pytest.mark.parametrize("preset,griffin", [("recurrentgemma-tiny", True),
                                            ("gemma2-tiny", False)])
def test_quick_json_structure(tmp_path, preset, griffin):
    rep, text = run_quick(tmp_path, preset, "--peers", "none")
    s = rep["settings"]
    assert rep["model"] == f"random:{preset}" and rep["quick"] is True
    assert set(rep["parts"]) == {"limits", "prefill", "ttft", "decode", "position", "ops",
                                 "peers"}
    assert pos(rep["threads"]) and rep["backend"]["cpu_isa"]
    assert rep["versions"]["gemma_native"] and rep["machine"]["python"]
    lim = rep["limits"]
    assert pos(lim["bandwidth_bytes_per_s"]) and pos(lim["bandwidth_1thread_bytes_per_s"])
    assert pos(lim["read_bandwidth_bytes_per_s"])
    probes = lim["read_bandwidth_probes_bytes_per_s"]
    assert set(probes) == {"numpy", "vector"} and all(pos(v) for v in probes.values())
    assert lim["read_bandwidth_bytes_per_s"] == max(probes.values())
    assert pos(lim["gemm_flops_per_s"]["numpy_fp32"])
    assert set(lim["core_peak_flops_per_s"]) == expected_core_peaks()
    assert all(pos(v) for v in lim["core_peak_flops_per_s"].values())
    # measured before and after our run; the ceiling is the higher of the two per family
    runs = lim["core_peak_runs_flops_per_s"]
    assert len(runs) == 2 and all(set(run) == expected_core_peaks() for run in runs)
    assert lim["core_peak_flops_per_s"] == {k: max(runs[0][k], runs[1][k]) for k in runs[0]}
    ours = rep["ours"]
    check_engine(ours, s, griffin)
    cfg = ours["config"]
    assert cfg["architecture"] == ("recurrent_gemma" if griffin else "gemma2")
    ops = {o["op"]: o for o in rep["ops"]}
    assert "linear decode GEMV bf16" in ops and "linear prefill GEMM bf16" in ops
    assert ("rglru_scan" in ops) == griffin
    for o in rep["ops"]:
        assert pos(o["seconds"]) and (pos(o.get("gb_per_s")) or pos(o.get("gflop_per_s")))
    r = rep["ratios"]
    bw = lim["bandwidth_bytes_per_s"]
    assert math.isclose(r["decode_ceiling_tokens_per_s"], bw / ours["weights_bytes"])
    for d in ours["decode"]:
        assert math.isclose(r[f"decode_b{d['batch']}_vs_bandwidth_ceiling"],
                            d["steps_per_s"] * ours["weights_bytes"] / bw)
        assert math.isclose(r[f"decode_b{d['batch']}_vs_read_ceiling"],
                            d["steps_per_s"] * ours["weights_bytes"] /
                            lim["read_bandwidth_bytes_per_s"])
    chunks = {d["batch"]: d["chunks"] for d in ours["decode"]}
    for b, cs in chunks.items():
        near = sorted(c["steps"] / c["seconds"] * ours["weights_bytes"] * 2 /
                      (c["read_before_bytes_per_s"] + c["read_after_bytes_per_s"]) for c in cs)
        assert math.isclose(r[f"decode_b{b}_vs_adjacent_read"], (near[1] + near[2]) / 2)
    # tokens/s of batch 4 over batch 1, round by round: batch * steps / seconds each
    same = sorted((4 * c4["steps"] / c4["seconds"]) / (c1["steps"] / c1["seconds"])
                  for c1, c4 in zip(chunks[1], chunks[4]))
    assert math.isclose(r["decode_b4_vs_b1_same_rounds"], (same[1] + same[2]) / 2)
    for n in s["prefill"]:
        assert pos(r[f"prefill_{n}_vs_gemm_peak"])
    key = core_peak_key(ours["compute_mode"], rep["backend"]["cpu_isa"])
    assert r.get("core_peak_used") == (key if key in lim["core_peak_flops_per_s"] else None)
    if "core_peak_used" in r:
        fl = r["prefill_flops_per_token"]
        for p in ours["prefill"]:
            assert math.isclose(r[f"prefill_{p['tokens']}_vs_core_peak"],
                                p["tokens_per_s"] * fl / lim["core_peak_flops_per_s"][key])
        assert "prefill FLOP/s vs core peak" in text
    p0, p1 = ours["position"]
    assert math.isclose(r["decode_far_vs_near_position"],
                        p1["tokens_per_s"] / p0["tokens_per_s"])
    assert rep["peers"] == {}
    # the printed summary names every measured row
    for row in ("ttft", "prefill", "decode batch 1", "decode batch 4", "decode @pos",
                "peak RSS", "decode ceiling", "decode read ceiling", "read bandwidth",
                "linear decode GEMV"):
        assert row in text


def expected_core_peaks():
    """The core peak families this CPU has (the bench measures exactly these)."""
    from gemma_native import _core
    f = _core.backend_info()["cpu_features"]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return set()
    out = {"fp32_fma_256"} if f.get("avx2") and f.get("fma") else set()
    if f.get("avx512f"):
        out.add("fp32_fma_512")
        out |= {"bf16_dot_512"} if f.get("avx512bf16") else set()
        out |= {"int8_dot_512"} if f.get("avx512vnni") else set()
    return out


def test_core_peaks_measure_what_the_cpu_has():
    import gemma_native as gn
    from gemma_native import _core
    for threads in (None, 1, 2):
        peaks = gn.core_peaks(threads)
        assert set(peaks) == expected_core_peaks()
        assert all(pos(v) for v in peaks.values())
    for bad in (0, -1, 1025, 1.5, True, "2"):
        with pytest.raises(gn.InvalidArgumentError, match="threads"):
            gn.core_peaks(bad)
    for bad in (0, -1, 1025):  # the core checks too
        with pytest.raises(ValueError, match="threads"):
            _core.core_peaks(bad)


def test_read_bandwidth_probe():
    """The native read probe: a positive rate on any thread count and with either loop (wide
    or plain loads), clean errors otherwise, and bytes beyond whole 128-byte steps per thread
    are not read (a 1-byte buffer is refused)."""
    import gemma_native as gn
    import numpy as np
    from gemma_native import _core
    from gemma_native.bench.probes import read_bandwidths
    buf = np.ones(1 << 20, np.uint8)
    for threads in (None, 1, 2, 3):
        assert pos(gn.read_bandwidth(buf, threads, 2))
    gn.set_cpu_isa("scalar")  # the loop of plain 8-byte loads (a CPU without AVX2)
    try:
        assert pos(gn.read_bandwidth(buf[:128 * 3 + 5], 3, 2))
    finally:
        gn.set_cpu_isa("auto")
    assert pos(gn.read_bandwidth(buf.reshape(1024, 1024).view(np.float32), 2))  # any C layout
    for args, needle in (((buf, 0, 1), "threads"), ((buf, 1025, 1), "threads"),
                         ((buf, 1, 0), "reps"), ((buf, 1.5, 1), "threads"),
                         ((buf, True, 1), "threads"), ((buf[:255], 2, 1), "128 bytes"),
                         ((buf[::2], 1, 1), "contiguous"), (("abc", 1, 1), "read_bandwidth")):
        with pytest.raises(gn.InvalidArgumentError, match=needle):
            gn.read_bandwidth(*args)
    for args in ((buf, 0, 1), (buf, 1, 0), (buf[:255], 2, 1)):  # the core checks too
        with pytest.raises(ValueError):
            _core.read_bandwidth(*args)
    reads = read_bandwidths(1 << 22, threads=2, reps=2)
    assert set(reads) == {"numpy", "vector"} and all(pos(v) for v in reads.values())


@pytest.mark.parametrize("mode,isa,key", [
    ("exact float32", "avx512vnni", "fp32_fma_512"), ("exact float32", "avx512", "fp32_fma_512"),
    ("exact float32", "avx2", "fp32_fma_256"), ("exact float32", "scalar", None),
    ("bfloat16 (avx512bf16; decode steps exact)", "avx512vnni", "bf16_dot_512"),
    ("bfloat16 (amx; decode steps exact)", "avx512vnni", None),
    ("bfloat16 (avx512bf16-emulated; decode steps exact)", "avx512vnni", None),
    ("int8 activations (quantized weights)", "avx512vnni", "int8_dot_512"),
    ("int8 activations (quantized weights)", "avx2", None),
    ("int8 activations (Q8_0R16 weights: whole-block int32 sums)", "avx512vnni", "int8_dot_512"),
    ("int8 activations (Q8_0R16 weights: whole-block int32 sums; prefill on AMX-INT8 tiles (amx))",
     "avx512vnni", None),
    ("int8 activations (Q8_0R16 weights: whole-block int32 sums; prefill on AMX-INT8 tiles "
     "(amx-emulated))", "avx512vnni", None)])
def test_core_peak_key_names_the_instructions_prefill_runs_on(mode, isa, key):
    assert core_peak_key(mode, isa) == key


def test_core_peak_key_reads_the_modes_models_report():
    """The key comes from Model.compute_mode's words: check it against the modes real models
    report on this machine, derived here from the kernel set and bf16 GEMM in use."""
    import gemma_native as gn
    info = gn.backend_info()
    isa, gemm = info["cpu_isa"], info["bf16_gemm"]
    fp32 = "fp32_fma_512" if isa.startswith("avx512") else ("fp32_fma_256" if isa == "avx2" else None)

    def key(**kw):
        return core_peak_key(gn.random_model("gemma-tiny", **kw).compute_mode, isa)

    assert key(dtype="bfloat16") == fp32
    assert key(dtype="bfloat16", activations="bfloat16") == (
        "bf16_dot_512" if gemm == "avx512bf16" else (fp32 if gemm == "none" else None))
    assert key(dtype="int8") == (
        "int8_dot_512" if isa == "avx512vnni" and info["int8_gemm"] == "none" else None)


def test_only_parts_and_no_peers(tmp_path):
    rep, _ = run_quick(tmp_path, "gemma-tiny", "--only", "decode", "--peers", "none")
    assert rep["parts"] == ["decode"]
    assert "limits" not in rep and "ops" not in rep and "peers" not in rep
    assert "prefill" not in rep["ours"] and len(rep["ours"]["decode"]) == 2
    assert "decode_ceiling_tokens_per_s" not in rep["ratios"]  # no bandwidth measured


def test_official_peer_ratios(tmp_path):
    """With the official recurrentgemma installed, its numbers land beside ours and each
    ratio is ours / peer of the same measurement."""
    pytest.importorskip("torch")
    import importlib.util
    if importlib.util.find_spec("recurrentgemma") is None:
        pytest.skip("recurrentgemma not installed")
    rep, text = run_quick(tmp_path, "recurrentgemma-tiny", "--only", "decode,peers",
                          "--peers", "official", "--peer-decode-tokens", "2")
    peer = rep["peers"]["official"]
    assert "failed" not in peer, peer.get("failed")
    assert peer["errors"] == {} and peer["version"]
    assert [d["batch"] for d in peer["decode"]] == [1, 4]
    for d, o in zip(peer["decode"], rep["ours"]["decode"]):
        assert pos(d["tokens_per_s"]) and d["steps"] == 2
        assert math.isclose(rep["ratios"][f"ours_vs_official_decode_b{d['batch']}"],
                            o["tokens_per_s"] / d["tokens_per_s"])
    assert "ours vs official" in text


def test_llama_peer_needs_a_gguf(tmp_path):
    rep, text = run_quick(tmp_path, "gemma-tiny", "--only", "decode,peers", "--peers",
                          "llama.cpp")
    assert "llama.cpp" in rep["peers_skipped"] and "gguf" in rep["peers_skipped"]["llama.cpp"]
    assert rep["peers"] == {}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("args,needle", [
    (["random:gemma9-giant", "--quick"], "gemma9-giant"),
    (["random:gemma-tiny", "--quick", "--only", "prefil"], "prefil"),
    (["/no/such/model", "--quick"], "/no/such/model"),
    (["random:gemma-tiny", "--quick", "--prefill", "0"], ">= 1"),
])
def test_bad_arguments_are_clean_errors(args, needle, entry):
    r = bench(*args, entry=entry)
    assert r.returncode == 1
    assert "gemma-native: error:" in r.stderr and needle in r.stderr
    assert "Traceback" not in r.stderr


def test_help_documents_parts_and_peers():
    r = bench("--help")
    assert r.returncode == 0
    for word in ("--quick", "--only", "--peers", "--json", "limits", "position", "official",
                 "transformers", "llama.cpp", "relabelling"):
        assert word in r.stdout, word


def test_module_entry_point_has_the_same_options():
    """python -m gemma_native.bench is gemma-native bench: the same help, hence options."""
    by_module, by_cli = bench("--help", entry="module"), bench("--help")
    assert by_module.returncode == 0 and by_module.stdout == by_cli.stdout


def test_module_entry_point_runs(tmp_path):
    out = tmp_path / "out.json"
    r = bench("random:gemma-tiny", "--quick", "--only", "decode", "--peers", "none", "--json",
              out, "--no-progress", entry="module")
    assert r.returncode == 0, r.stderr + r.stdout
    rep = json.loads(out.read_text())
    assert [d["batch"] for d in rep["ours"]["decode"]] == [1, 4]
    assert "decode batch 4" in r.stdout and r.stderr == ""


def test_bf16_rounding_matches_the_package():
    """The bench rounds its bf16 test weights itself (it uses public names only); it must give
    the bits the package's own converter gives, ties to even included."""
    import numpy as np

    from gemma_native._dtypes import f32_to_bf16_bits
    from gemma_native.bench.opbench import bf16_bits

    rng = np.random.default_rng(0)
    spread = rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000)
    x = np.concatenate([spread.astype(np.float32),
                        np.float32([0.0, -0.0, 1.0, -1.5, 3.0e38, -3.0e38, 1e-40])])
    u = x.view(np.uint32)
    ties = ((u & np.uint32(0xFFFF0000)) | np.uint32(0x8000)).view(np.float32)  # exactly halfway
    for v in (x, ties):
        assert np.array_equal(bf16_bits(v), f32_to_bf16_bits(v))


@pytest.mark.parametrize("preset,griffin", [("recurrentgemma-tiny", True), ("gemma-tiny", False)])
def test_ours_engine_steps_and_places_states(preset, griffin):
    """Our engine (public API only: forward_batch, new_state, to_numpy/load_numpy) advances
    every row one position per decode step and puts a state at the far position."""
    from gemma_native.bench.engines import Ours
    from gemma_native.bench.harness import tokens

    eng = Ours({"model": f"random:{preset}", "dtype": None, "threads": None})
    assert eng.griffin == griffin and eng.weights_bytes > 0 and eng.threads >= 1
    states = eng.prefill(tokens(3 * 5, eng.vocab, 0).reshape(3, 5))
    assert [s.pos for s in states] == [5, 5, 5]
    eng.decode(states, tokens(3, eng.vocab, 1))
    assert [s.pos for s in states] == [6, 6, 6]
    source = tokens(300, eng.vocab, 2)
    far = eng.place(eng.prefill(source[None, :40]), 300, source)
    assert len(far) == 1 and far[0].pos == 300
    eng.decode(far, source[:1])
    assert far[0].pos == 301


def test_prefill_best_of_stops_at_the_run_count_or_the_time_budget(monkeypatch):
    """Prefill counts the fastest of up to 3 runs while they took under the budget."""
    from gemma_native.bench import harness

    clock = [0.0]
    monkeypatch.setattr(harness, "now", lambda: clock[0])

    def run(durations):
        it = iter(durations)
        return harness._best_of(lambda: clock.__setitem__(0, clock[0] + next(it)), 3, 3.0)

    assert run([0.5, 0.4, 0.6, 9.0]) == [0.5, 0.4, 0.6]   # three runs, not a fourth
    assert run([2.0, 1.5, 9.0]) == [2.0, 1.5]             # 3.5 s > budget: stops
    assert run([5.0, 9.0]) == [5.0]                       # a long prefill runs once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS / VmHWM are Linux's")
def test_peak_rss_leaves_out_the_decode_read_probe():
    """Our decode rounds read a probe buffer beside the steps (256 MiB in a full run) in the
    engine's own process; the engine's reported peak RSS must not count it (it had read 643
    instead of 385 MiB for Gemma 3 270M)."""
    from gemma_native.bench.harness import run_child
    from gemma_native.bench.runner import QUICK

    probe = 1 << 28
    settings = dict(QUICK, batches=[1], probe_bytes=probe)
    res, peak = run_child({"engine": "ours", "model": "random:recurrentgemma-tiny", "dtype": None,
                           "activations": None, "pack_weights": None, "threads": None,
                           "parts": ["decode"], "settings": settings, "peer_dtype": None},
                          TIMEOUT)
    assert "failed" not in res, res.get("failed")
    assert res["errors"] == {}, res["errors"]
    assert probe * 0.95 <= res["read_probe_rss_bytes"] <= probe * 1.05
    raw = res["rss_peak_with_probe_bytes"]
    assert raw >= res["rss_after_load_bytes"] + probe * 0.95  # the probe was resident
    assert peak == res["rss_peak_self_bytes"] == max(res["rss_peak_before_probe_bytes"],
                                                       raw - res["read_probe_rss_bytes"])
    assert res["rss_after_load_bytes"] * 0.99 <= peak <= raw - probe * 0.9

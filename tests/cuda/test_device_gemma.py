"""The device model path for the Gemma transformers (1, 2, 3): a model built with
device="cuda-emu" (the CUDA kernels on the SIMT emulator) or device="cuda" (a GPU; marked gpu,
skipped without one) keeps its weights and KV caches in backend memory, runs every op through
its CUDA kernel and replays decode steps from captured graphs, captured again when a cache grows
(new memory).  Its logits must match the CPU model's to fp32 rounding (the CPU model is tied to
transformers by tests/parity/test_gemma_reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn

EMU = "cuda-emu"
# Small shapes (the emulator runs every CUDA thread on the CPU) with the structure that matters:
# a window of 6 so sliding rings wrap within a short test; 19 positions so the global caches
# grow past their first 16 slots during decode (a new capture); vocab > 256.
SHAPE = dict(width=64, mlp_width=128, head_dim=16, vocab_size=300)
PRESETS = {
    "gemma-tiny": dict(num_layers=2),                                    # MQA, global layers only
    "gemma2-tiny": dict(num_layers=4, sliding_window=6),                 # GQA, soft-caps, post-norms
    "gemma3-tiny": dict(num_layers=7, sliding_window=6, num_heads=4),    # QK-norm, 5:1 pattern
}


@pytest.fixture(params=[EMU, pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cuda" and not gn.backend_info()["cuda"]["available"]:
        pytest.skip("no CUDA GPU: " + str(gn.backend_info()["cuda"]["reason"]))
    return request.param


def _pair(preset, device, dtype="float32"):
    kw = {**SHAPE, **PRESETS[preset]}
    cpu = gn.random_model(preset, dtype=dtype, seed=5, **kw)
    dev = gn.random_model(preset, dtype=dtype, seed=5, device=device, **kw)
    return cpu, dev


def _close(got, want, what):
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= 2e-4 * scale + 1e-5, f"{what}: max |diff| {err} vs logits scale {scale}"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_prefill_logits_match_cpu(device, preset):
    cpu, dev = _pair(preset, device)
    assert dev._core.device.startswith(device) and cpu._core.device == "cpu"
    ids = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], 11)  # past the window
    _close(dev.logits(ids), cpu.logits(ids), f"{preset} prefill")


def test_bfloat16_weights_match_cpu(device):
    cpu, dev = _pair("gemma3-tiny", device, "bfloat16")
    ids = np.random.default_rng(1).integers(0, SHAPE["vocab_size"], 9)
    _close(dev.logits(ids), cpu.logits(ids), "bfloat16 prefill")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_decode_replays_graphs_recaptures_on_growth_and_matches_cpu(device, preset):
    cpu, dev = _pair(preset, device)
    rng = np.random.default_rng(2)
    prompt = rng.integers(0, SHAPE["vocab_size"], 5)
    sc, sd = cpu.new_state(), dev.new_state()
    _close(dev.forward(prompt, sd), cpu.forward(prompt, sc), "prompt")
    # 14 steps: sliding rings (6 slots) wrap twice; global caches grow from 16 slots at
    # position 16 (other memory: the step is captured again, then replayed).
    for step in range(14):
        tok = rng.integers(0, SHAPE["vocab_size"], 1)
        _close(dev.forward(tok, sd), cpu.forward(tok, sc), f"{preset} decode step {step}")
    assert dev._core.graph_replays == 14 and cpu._core.graph_replays == 0
    assert sd.pos == sc.pos == 19 and sd.nbytes == sc.nbytes
    np.testing.assert_allclose(sd.to_numpy(), sc.to_numpy(), rtol=1e-4, atol=1e-4)


def test_batched_decode_with_different_positions_matches_cpu(device):
    cpu, dev = _pair("gemma2-tiny", device)
    rng = np.random.default_rng(3)
    sc, sd = [], []
    for n in (2, 9, 4):  # three sequences at different positions (one past the window)
        ids = rng.integers(0, SHAPE["vocab_size"], n)
        sc.append(cpu.new_state())
        sd.append(dev.new_state())
        cpu.forward(ids, sc[-1])
        dev.forward(ids, sd[-1])
    for step in range(5):
        toks = rng.integers(0, SHAPE["vocab_size"], (3, 1))
        _close(dev.forward_batch(toks, sd), cpu.forward_batch(toks, sc), f"batched step {step}")
    assert dev._core.graph_replays == 5


def test_clone_save_restore_on_the_device(device):
    cpu, dev = _pair("gemma3-tiny", device)
    rng = np.random.default_rng(4)
    ids = rng.integers(0, SHAPE["vocab_size"], 8)
    a = dev.new_state()
    dev.forward(ids, a)
    tok = rng.integers(0, SHAPE["vocab_size"], 1)
    b = a.clone()  # other memory: its own capture, never the graph of `a`
    _close(dev.forward(tok, b), dev.forward(tok, a), "clone")
    saved, pos = a.to_numpy(), a.pos
    ref = cpu.new_state()
    cpu.forward(np.concatenate([ids, tok]), ref)
    np.testing.assert_allclose(saved, ref.to_numpy(), rtol=1e-4, atol=1e-4)
    dev.forward(tok, a)
    a.load_numpy(saved, pos)
    c = dev.new_state()
    c.load_numpy(saved, pos)
    _close(dev.forward(tok, c), dev.forward(tok, a), "restored state")


def test_refused_calls_leave_device_states_unchanged(device):
    _, dev = _pair("gemma2-tiny", device)
    s = dev.new_state()
    dev.forward(np.arange(8), s)  # past the window: the rings have wrapped
    before = s.to_numpy()
    with pytest.raises(gn.InvalidArgumentError, match="outside the vocabulary"):
        dev.forward([1, SHAPE["vocab_size"]], s)
    assert s.pos == 8
    np.testing.assert_array_equal(s.to_numpy(), before)


def test_greedy_generation_matches_cpu(device):
    cpu, dev = _pair("gemma3-tiny", device, "bfloat16")
    p = gn.SamplingParams(max_tokens=8, temperature=0.0, stop_token_ids=())
    assert dev.generate([5, 17, 42, 7], p).token_ids == cpu.generate([5, 17, 42, 7], p).token_ids


@pytest.mark.parametrize("preset", ["gemma-tiny", "gemma3-tiny"])
def test_q8_0_weights_with_float_activations_match_cpu(device, preset):
    """dtype="int8" (Q8_0 blocks) runs on the device with float activations: the dequantized
    model's math, as on the CPU with activations="float32"."""
    kw = {**SHAPE, **PRESETS[preset]}
    cpu = gn.random_model(preset, dtype="int8", activations="float32", seed=6, **kw)
    dev = gn.random_model(preset, dtype="int8", activations="float32", seed=6, device=device,
                          **kw)
    ids = np.random.default_rng(7).integers(0, SHAPE["vocab_size"], 9)
    _close(dev.logits(ids), cpu.logits(ids), f"{preset} Q8_0 prefill")
    sc, sd = cpu.new_state(), dev.new_state()
    for step, tok in enumerate(ids):
        _close(dev.forward([tok], sd), cpu.forward([tok], sc), f"{preset} Q8_0 decode {step}")
    assert dev._core.graph_replays == len(ids)


def test_quantized_weights_with_8_bit_activations_say_the_device_has_no_kernels(device):
    with pytest.raises(gn.DeviceError, match="8-bit activations"):
        gn.random_model("gemma3-tiny", dtype="int8", device=device, **SHAPE,
                        **PRESETS["gemma3-tiny"])

"""The device model path: a RecurrentGemma model built with device="cuda-emu" (the CUDA
kernels on the SIMT emulator) or device="cuda" (a GPU; marked gpu, skipped without one) copies
its weights into backend memory, runs every op through its CUDA kernel and replays decode steps
from a captured graph.  Its logits must match the CPU model's
(tests/parity/test_griffin_reference.py ties the CPU model to the official implementation).

Skips while an op the model needs has no CUDA kernel (the reason names them)."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops

NEEDED = {"embedding", "rmsnorm", "linear", "block_diag_linear", "conv1d", "rglru_scan", "rope",
          "attention", "geglu", "softcap", "add"}
EMU = "cuda-emu"


@pytest.fixture(params=[EMU, pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    missing = sorted(NEEDED - set(ops.emulated_ops()))
    if missing:
        pytest.skip(f"ops without a CUDA kernel yet: {missing}")
    return request.param  # "cuda" is marked gpu: tests/conftest.py skips it without a GPU


# Small but real structure: recurrent and attention layers, 2 heads, a window of 6 so that the
# ring buffer wraps within a short test, lru width != width, and a vocabulary > 256.
SHAPE = dict(num_layers=3, width=64, lru_width=96, mlp_width=160, num_heads=2, head_dim=32,
             attention_window_size=6, vocab_size=300)


def _pair(device, dtype="float32", **kw):
    args = {**SHAPE, **kw}
    cpu = gn.random_model("recurrentgemma-tiny", dtype=dtype, seed=3, **args)
    dev = gn.random_model("recurrentgemma-tiny", dtype=dtype, seed=3, device=device, **args)
    return cpu, dev


def _close(got, want, what):
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= 2e-4 * scale + 1e-5, f"{what}: max |diff| {err} vs logits scale {scale}"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_prefill_logits_match_cpu(device, dtype):
    cpu, emu = _pair(device, dtype)
    assert emu._core.device.startswith(device) and cpu._core.device == "cpu"
    ids = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], 11)
    _close(emu.logits(ids), cpu.logits(ids), f"prefill {dtype}")


def test_decode_steps_replay_a_graph_and_match_cpu(device):
    cpu, emu = _pair(device)
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, SHAPE["vocab_size"], 5)
    sc, se = cpu.new_state(), emu.new_state()
    _close(emu.forward(prompt, se), cpu.forward(prompt, sc), "prompt")
    # 14 decode steps: past the window of 6, so the K/V ring wraps twice.
    for step in range(14):
        tok = rng.integers(0, SHAPE["vocab_size"], 1)
        _close(emu.forward(tok, se), cpu.forward(tok, sc), f"decode step {step}")
    assert emu._core.graph_replays == 14
    assert cpu._core.graph_replays == 0
    assert se.pos == sc.pos == 19
    np.testing.assert_allclose(se.to_numpy(), sc.to_numpy(), rtol=1e-4, atol=1e-4)


def test_batched_decode_with_different_positions_matches_cpu(device):
    cpu, emu = _pair(device)
    rng = np.random.default_rng(2)
    states_c, states_e = [], []
    for n in (2, 7, 4):  # three sequences at different positions (one past the window)
        ids = rng.integers(0, SHAPE["vocab_size"], n)
        sc, se = cpu.new_state(), emu.new_state()
        cpu.forward(ids, sc)
        emu.forward(ids, se)
        states_c.append(sc._core)
        states_e.append(se._core)
    for step in range(5):
        toks = rng.integers(0, SHAPE["vocab_size"], (3, 1)).astype(np.int32)
        want = cpu._core.forward(toks, states_c, False)
        got = emu._core.forward(toks, states_e, False)
        _close(got, want, f"batched decode step {step}")
    assert emu._core.graph_replays == 5


def test_graph_is_recaptured_for_other_states_and_state_round_trip(device):
    cpu, emu = _pair(device)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, SHAPE["vocab_size"], 4)
    a_c, a_e = cpu.new_state(), emu.new_state()
    cpu.forward(ids, a_c)
    emu.forward(ids, a_e)
    tok = rng.integers(0, SHAPE["vocab_size"], 1)
    _close(emu.forward(tok, a_e), cpu.forward(tok, a_c), "state a")
    # A clone is other memory: the captured graph must not be reused for it.
    b_c, b_e = a_c.clone(), a_e.clone()
    _close(emu.forward(tok, b_e), cpu.forward(tok, b_c), "clone b")
    _close(emu.forward(tok, a_e), cpu.forward(tok, a_c), "back to a")
    # Saving and restoring a device state goes through download/upload.
    saved, pos = a_e.to_numpy(), a_e.pos
    emu.forward(tok, a_e)
    a_e.load_numpy(saved, pos)
    c_e = emu.new_state()
    c_e.load_numpy(saved, pos)
    _close(emu.forward(tok, c_e), emu.forward(tok, a_e), "restored state")


def test_greedy_generation_matches_cpu(device):
    cpu, emu = _pair(device, "bfloat16")
    prompt = [5, 17, 42, 7]
    p = gn.SamplingParams(max_tokens=10, temperature=0.0)
    assert emu.generate(prompt, p).token_ids == cpu.generate(prompt, p).token_ids


def test_bad_tokens_and_quantized_weights_raise_clearly(device):
    _, emu = _pair(device)
    with pytest.raises(gn.InvalidArgumentError, match="outside the vocabulary"):
        emu.logits([1, SHAPE["vocab_size"]])
    with pytest.raises(gn.DeviceError, match="no kernels for"):
        gn.random_model("recurrentgemma-tiny", dtype="int8", device=device, **SHAPE)


def test_loaded_checkpoint_runs_on_the_device(device, tiny_checkpoint):
    """gn.load(folder, device=...) of a real Hugging Face-style folder (bfloat16 safetensors)
    gives the CPU's logits; the tokenizer path works the same on the device."""
    path = tiny_checkpoint(dtype="bfloat16", tokenizer=True)
    cpu = gn.load(path)
    dev = gn.load(path, device=device)
    ids = cpu.encode("hello world, hello device")
    _close(dev.logits(ids), cpu.logits(ids), "loaded checkpoint")
    p = gn.SamplingParams(max_tokens=6, temperature=0.0, stop_token_ids=())
    assert dev.generate("hello", p).token_ids == cpu.generate("hello", p).token_ids

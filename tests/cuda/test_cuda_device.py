"""Without a usable GPU (no CUDA backend compiled in, or no driver / device), device="cuda" must
raise gn.DeviceError with the reason while the CPU path and the emulated CUDA kernels work.
(The CUDA kernels themselves are checked on the emulator: test_ops.py, test_device_model.py,
test_cuda_emu_*.py; on a GPU by the same tests' gpu-marked cases.)"""

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops


NO_GPU = not gn.backend_info()["cuda"]["available"]
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="a CUDA GPU is present")


def test_backend_info_cuda_fields():
    cuda = gn.backend_info()["cuda"]
    assert set(cuda) >= {"compiled", "available", "device_count", "devices", "architectures",
                         "reason"}
    assert cuda["device_count"] == len(cuda["devices"])
    assert cuda["available"] == (cuda["device_count"] > 0)
    if cuda["compiled"]:
        assert cuda["architectures"].split(",") == ["80-real", "86-real", "89-real", "90"]
    for d in cuda["devices"]:
        assert d["name"] and d["memory_bytes"] > 0 and d["bandwidth_gb_per_s"] > 0


@needs_no_gpu
def test_backend_info_reports_cuda_unavailable_with_reason():
    info = gn.backend_info()
    assert info["cuda"]["available"] is False
    assert "CUDA" in info["cuda"]["reason"]
    assert info["cpu_isa"] in info["available_isas"]  # the CPU entries are still there


@needs_no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA"])
def test_ops_on_cuda_raise_device_error(device):
    x = np.ones((2, 8), np.float32)
    w = np.zeros(8, np.float32)
    with pytest.raises(gn.DeviceError, match="CUDA"):
        ops.rmsnorm(x, w, device=device)
    with pytest.raises(gn.DeviceError):
        ops.softcap(x, 30.0, device=device)


def test_unknown_device_is_a_clear_error():
    with pytest.raises(gn.DeviceError, match="unknown device"):
        ops.geglu(np.ones(4, np.float32), np.ones(4, np.float32), device="tpu")
    with pytest.raises(gn.DeviceError):
        ops.geglu(np.ones(4, np.float32), np.ones(4, np.float32), device=3)


def test_cpu_device_matches_default():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    np.testing.assert_array_equal(ops.rmsnorm(x, w, device="cpu"), ops.rmsnorm(x, w))


@needs_no_gpu
def test_load_on_cuda_raises_before_reading(tmp_path):
    with pytest.raises(gn.DeviceError, match="CUDA"):
        gn.load(tmp_path / "does-not-matter", device="cuda")


@needs_no_gpu
def test_random_model_on_cuda_raises_and_emulator_works():
    with pytest.raises(gn.DeviceError, match="not available"):
        gn.random_model("recurrentgemma-tiny", device="cuda")
    m = gn.random_model("recurrentgemma-tiny", device="cuda-emu", num_layers=3, vocab_size=300)
    assert m._core.device == "cuda-emu"


def test_bad_cuda_device_names():
    for bad in ("cuda:x", "cuda:-1", "gpu"):
        with pytest.raises(gn.DeviceError):
            ops.rmsnorm(np.ones((1, 4), np.float32), np.ones(4, np.float32), device=bad)


@pytest.mark.gpu
def test_gpu_is_usable_when_reported():
    x = np.random.default_rng(0).standard_normal((3, 300)).astype(np.float32)
    w = np.ones(300, np.float32)
    np.testing.assert_allclose(ops.rmsnorm(x, w, device="cuda"), ops.rmsnorm(x, w),
                               rtol=1e-5, atol=1e-6)

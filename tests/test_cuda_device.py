"""Without a CUDA backend, device="cuda" must raise gn.DeviceError while the CPU path works."""

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops


def test_backend_info_reports_cuda_unavailable_with_reason():
    info = gn.backend_info()
    assert info["cuda"]["available"] is False
    assert "CUDA" in info["cuda"]["reason"]
    assert info["cpu_isa"] in info["available_isas"]  # the CPU entries are still there


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


def test_load_on_cuda_raises_before_reading(tmp_path):
    with pytest.raises(gn.DeviceError, match="CUDA"):
        gn.load(tmp_path / "does-not-matter", device="cuda")


@pytest.mark.gpu
def test_gpu_marker_skips_without_gpu():
    if not gn.backend_info()["cuda"]["available"]:
        pytest.skip("no CUDA backend / GPU available")
    raise AssertionError("a CUDA backend reported available; real-GPU tests are not written yet")

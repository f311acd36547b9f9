"""Fixtures of the op tests: ``isa`` runs a test on each CPU kernel set and on the CUDA kernels
(emulated, or on a GPU), and every test here leaves the kernel set on 'auto'."""

from __future__ import annotations

import pytest

import gemma_native as gn
from gemma_native import ops

from tests.helpers.opcheck import ALL_ISAS, AVAILABLE_ISAS


@pytest.fixture(autouse=True)
def _restore_auto_isa():
    yield
    gn.set_cpu_isa("auto")


@pytest.fixture(params=ALL_ISAS)
def isa(request):
    """The kernel set ("scalar", "avx2", "avx512", "avx512vnni", "neon", "neondot": skipped where
    this CPU lacks it; "avx512emu", "avx512vnniemu": skipped where they were not built) or the device
    ("cuda-emu", "cuda") the test's ops run on.  On a device, a test of an op without a CUDA
    kernel skips; the op is the test name's prefix (test_<op>_...)."""
    name = request.param
    if name in (ops.EMULATOR, "cuda"):  # "cuda" is marked gpu: skipped without a GPU
        test = request.node.originalname
        if not any(test.startswith(f"test_{op}_") for op in ops.emulated_ops()):
            pytest.skip(f"{test}: its op has no CUDA kernel yet")
        with ops.use_device(name):
            yield name
        return
    if name not in AVAILABLE_ISAS:
        pytest.skip(f"CPU kernel set {name!r} is not built or this CPU cannot run it "
                    f"(available here: {AVAILABLE_ISAS})")
    gn.set_cpu_isa(name)
    assert gn.backend_info()["cpu_isa"] == name
    yield name
    gn.set_cpu_isa("auto")

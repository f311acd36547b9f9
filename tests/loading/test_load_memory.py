"""What loading leaves resident: a checkpoint converted at load (float32 stored, loaded as int8 or
bfloat16) must not keep its file's pages resident beside the converted copies, and the heap
buffers freed during conversion go back to the system (glibc).  Both are byte counts the
kernel reports, the same on every machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

import gemma_native as gn
from tests.helpers.tinyckpt import small_config, write_tiny_checkpoint

linux = pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps")


def _file_rss_bytes(path: str) -> int:
    """Resident bytes of this process's mappings of the file at path (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                inside = len(fields) >= 6 and fields[5] == path
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


@pytest.fixture(scope="module")
def float32_folder(tmp_path_factory):
    # ~6 MB of float32 matrices; the tensors used as stored (norms, biases) are < 3% of it
    cfg = small_config(width=256, num_heads=4, lru_width=256, mlp_expanded_width=768,
                       num_layers=3, vocab_size=1024)
    return write_tiny_checkpoint(str(tmp_path_factory.mktemp("f32")), cfg, dtype="float32")


@linux
@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_converted_checkpoint_leaves_its_file_pages(float32_folder, dtype):
    path = os.path.realpath(os.path.join(float32_folder, "model.safetensors"))
    size = os.path.getsize(path)
    m = gn.load(float32_folder, dtype=dtype)  # mmap=True: the file is mapped
    assert m.weight_dtype == dtype
    # every matrix was read to convert it; only the small tensors used as stored may stay
    assert _file_rss_bytes(path) <= size // 10, (_file_rss_bytes(path), size)
    ids = [1, 5, 9, 3]
    assert m.logits(ids).shape == (4, 1024)  # the model still reads what it kept


@linux
def test_as_stored_checkpoint_stays_mapped(float32_folder):
    # dtype as stored: the matrices are views of the mapping, read lazily (nothing copied)
    path = os.path.realpath(os.path.join(float32_folder, "model.safetensors"))
    m = gn.load(float32_folder)
    m.logits([1, 5, 9, 3])
    assert _file_rss_bytes(path) >= os.path.getsize(path) // 2


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap")
def test_load_returns_freed_heap_to_the_system():
    # int8 conversion allocates and frees buffers of up to tens of MB; glibc kept them in the
    # heap (growth 337 MB for 184 MB of weights at this shape) until load trimmed it (191 MB)
    code = textwrap.dedent("""
        import gemma_native as gn
        def rss():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
        before = rss()
        m = gn.random_model("recurrentgemma-2b", dtype="int8", num_layers=2, vocab_size=4096)
        print(m.weights_nbytes, rss() - before)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    weights, growth = int(out[0]), int(out[1])
    assert weights > 150e6
    assert growth <= weights + 48 * 2**20, (weights, growth)


def _peak_growth(dtype: str, make: str) -> tuple[int, int]:
    """(weights_nbytes, peak RSS growth) of the model the expression `make` builds, in a fresh
    interpreter whose imports and heap were warmed by a tiny model of `dtype` first."""
    code = textwrap.dedent(f"""
        import gemma_native as gn
        gn.random_model("recurrentgemma-tiny", dtype={dtype!r})  # imports done, heap warm
        def status(key):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
        before = status("VmRSS")
        m = {make}
        print(m.weights_nbytes, status("VmHWM") - before)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    return int(out[0]), int(out[1])


@linux
@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_converting_load_peaks_below_the_file(tmp_path, dtype):
    # each matrix's file pages are dropped once converted (int8: chunk by chunk), so the peak
    # is about the converted weights plus one matrix, not the whole file on top (before: 1.5x
    # the file for int8 at this shape)
    cfg = small_config(width=512, num_heads=4, lru_width=512, mlp_expanded_width=1536,
                       num_layers=4, vocab_size=4096)
    folder = write_tiny_checkpoint(str(tmp_path / "f32"), cfg, dtype="float32")
    size = os.path.getsize(os.path.join(folder, "model.safetensors"))
    weights, peak = _peak_growth(dtype, f"gn.load({folder!r}, dtype={dtype!r})")
    assert size > 50e6 and weights < size * 0.6
    assert peak <= weights + size * 2 // 5, (weights, peak, size)


@linux
@pytest.mark.parametrize("dtype", ["int8", "bfloat16"])
def test_random_model_peaks_near_its_weights(dtype):
    # random weights are drawn one tensor at a time as the mapper takes them, and the int8
    # layout rewrites each matrix in place: the peak is the weights plus one matrix's
    # conversion buffers (~64 MB of float32), as for load() -- the 2B int8 model peaked at
    # 8.2 GB for 2.9 GB of weights when every random bf16 tensor existed first (here: 634 MB
    # for 184 MB)
    weights, peak = _peak_growth(dtype, f"gn.random_model('recurrentgemma-2b', dtype={dtype!r}, "
                                        "num_layers=2, vocab_size=4096)")
    assert weights > 150e6
    assert peak <= weights * 1.1 + 200 * 2**20, (weights, peak)


@linux
def test_packing_a_bfloat16_folder_peaks_at_its_weights(tmp_path):
    # each matrix (the 134 MB embedding table here, 1.3 GB in the 2B) is copied into the packed
    # layout ~32 MB of rows at a time, its file pages dropped as it goes: packing it whole
    # peaks at the weights plus the table
    cfg = small_config(width=512, num_heads=4, lru_width=512, mlp_expanded_width=1536,
                       num_layers=2, vocab_size=131072)
    folder = write_tiny_checkpoint(str(tmp_path / "bf16"), cfg, dtype="bfloat16")
    weights, peak = _peak_growth("bfloat16", f"gn.load({folder!r}, pack_weights=True)")
    assert weights > 140e6
    assert peak <= weights * 1.1 + 48 * 2**20, (weights, peak)

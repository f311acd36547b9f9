"""What this machine can do, measured in this process: memory bandwidth (copy and read), the
GEMM peak of numpy (and torch, when installed), and the facts a report names (CPU, memory,
versions, this process's resident memory)."""

from __future__ import annotations

import math
import os
import platform
import threading
import time

import numpy as np


def now() -> float:
    return time.perf_counter()


def proc_status_bytes(field: str):
    """VmRSS / VmHWM (or another size field of /proc/self/status) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def dist_version(dist: str):
    """The installed version of a distribution, or None."""
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def machine() -> dict:
    """Platform, Python, CPU count and model name, total memory, numpy version."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_bytes"] = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return info


def _best_sliced(size: int, threads: int, reps: int, fn) -> float:
    """Best wall time over `reps` runs of fn(lo, hi) on `threads` Python threads at once, each
    on its own equal slice of [0, size).  numpy releases the GIL inside fn, so the slices run
    in parallel; a barrier starts them together."""
    cuts = np.linspace(0, size, threads + 1).astype(int)
    best = math.inf
    for _ in range(reps):
        barrier = threading.Barrier(threads + 1)

        def work(lo, hi):
            barrier.wait()
            fn(lo, hi)

        workers = [threading.Thread(target=work, args=(cuts[i], cuts[i + 1]))
                   for i in range(threads)]
        for t in workers:
            t.start()
        t0 = now()
        barrier.wait()
        for t in workers:
            t.join()
        best = min(best, now() - t0)
    return best


def copy_bandwidth(nbytes: int, threads: int = 2, reps: int = 5) -> float:
    """STREAM-like copy (np.copyto over `threads` slices of one array of `nbytes`): bytes read
    plus bytes written per second, best of `reps`."""
    src = np.ones(nbytes // 8)
    dst = np.zeros_like(src)
    best = _best_sliced(src.size, threads, reps,
                        lambda lo, hi: np.copyto(dst[lo:hi], src[lo:hi]))
    return 2 * src.nbytes / best


def read_bandwidths(nbytes: int, threads: int = 2, reps: int = 5) -> dict:
    """Streaming reads of one array of `nbytes` on `threads` threads, bytes read per second,
    best of `reps` each: ``numpy`` (an int64 sum over each thread's slice) and ``vector`` (the
    core's own loop of wide loads and nothing else, gn.read_bandwidth).  On the AMD EPYC Zen 5
    numpy's sum read 36-49 GB/s in rounds where the loop read 47-51 (once the other way round),
    slow enough that decode read "above the ceiling"; the faster of the two is the ceiling."""
    arr = np.ones(nbytes // 8, dtype=np.int64)
    best = _best_sliced(arr.size, threads, reps, lambda lo, hi: arr[lo:hi].sum())
    import gemma_native as gn
    return {"numpy": arr.nbytes / best,
            "vector": gn.read_bandwidth(arr.view(np.uint8), threads, reps)}


def read_bandwidth(nbytes: int, threads: int = 2, reps: int = 5) -> float:
    """The read ceiling: the faster of read_bandwidths().  Decode only reads its weights."""
    return max(read_bandwidths(nbytes, threads, reps).values())


def gemm_peak(n: int, threads: int) -> dict:
    """FLOP/s of square n x n matmuls: numpy fp32 always; torch fp32 and bf16 when torch is
    installed (bf16 at n <= 512: CPUs without bf16 hardware run it at ~1 GFLOP/s).  Keys
    ``<lib>_<dtype>`` hold FLOP/s, ``<lib>_<dtype>_n`` the size used when it differs from n."""
    out = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = math.inf
    for _ in range(3):
        t0 = now()
        a @ b
        best = min(best, now() - t0)
    out["numpy_fp32"] = 2 * n**3 / best
    try:
        import torch
    except ImportError:
        return out
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, dt, m in (("torch_fp32", torch.float32, n),
                            ("torch_bf16", torch.bfloat16, min(n, 512))):
            ta = torch.from_numpy(a[:m, :m]).to(dt)
            tb = torch.from_numpy(b[:m, :m]).to(dt)
            torch.matmul(ta, tb)  # warm-up
            best = math.inf
            for _ in range(2):
                t0 = now()
                torch.matmul(ta, tb)
                best = min(best, now() - t0)
            out[name] = 2 * m**3 / best
            out[name + "_n"] = m
    finally:
        torch.set_num_threads(old)
    return out


def measure_limits(settings: dict, threads: int) -> dict:
    """The ``limits`` part of a report: bandwidths over ``settings["bw_bytes"]``, the GEMM
    peak at ``settings["gemm_n"]`` (torch on `threads` threads) and the cores' arithmetic peak
    (`threads` threads)."""
    size = settings["bw_bytes"]
    return {"bandwidth_bytes_per_s": copy_bandwidth(size, threads=2),
            "bandwidth_1thread_bytes_per_s": copy_bandwidth(size, threads=1, reps=3),
            **_read_entries(read_bandwidths(size, threads=2)),
            "bandwidth_array_bytes": size, "gemm_n": settings["gemm_n"],
            "gemm_flops_per_s": gemm_peak(settings["gemm_n"], threads),
            "core_peak_flops_per_s": core_peaks(threads)}


def _read_entries(reads: dict) -> dict:
    return {"read_bandwidth_bytes_per_s": max(reads.values()),
            "read_bandwidth_probes_bytes_per_s": reads}


def core_peaks(threads: int) -> dict:
    """The cores' arithmetic ceiling per instruction family (FLOP/s of register-only loops of
    independent multiply-adds on `threads` threads; see gn.core_peaks).  numpy's GEMM is a
    library's speed, and on some CPUs (Zen 5) well below what the FMA units can do."""
    import gemma_native as gn
    return gn.core_peaks(threads)

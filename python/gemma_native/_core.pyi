"""Type stub of the compiled module ``gemma_native._core`` (csrc/bindings/*.cc).

Written by hand from the pybind11 bindings; tests/test_typing.py checks that it names exactly
what the compiled module defines.  Users should not need this module: the package wraps it
(``gemma_native.ops``, ``gemma_native.Model``).

Conventions shared by the functions below:

* Arrays must be C-contiguous and of the exact dtype named (float32 activations, int32 token
  ids and positions, int64 counts); nothing is converted.  A wrong shape raises ShapeError, a
  wrong dtype DTypeError (gemma_native.errors).
* A weight ``dtype`` is an integer code (``DTYPE_CODES``): 0 float32, 1 bfloat16 (uint16
  bits), 2 float16 (float16 or uint16 bits), and GGML blocks as uint8 ``[rows, row_bytes]``:
  3 Q8_0, 4 Q4_0, 5 Q5_0, 6 Q4_K, 7 Q6_K.
* Arguments the bindings do not name are positional-only (``/``).
* ``pos`` gives each token's position in its document; position 0 starts a document, which
  resets the recurrence, the convolution's history and what attention may see.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

_Array = np.ndarray
_WeightEntry = Tuple[np.ndarray, int]

# --- process-wide settings (csrc/bindings/module.cc) ---

# Lists generated from the C++ definitions (gemma_native/dtype.h, common.h):
DTYPE_CODES: Dict[str, int]  # weight dtype name -> code
QUANT_BLOCKS: Dict[str, Tuple[int, int]]  # GGML dtype -> (values, bytes) per block
ERROR_KINDS: Dict[str, str]  # C++ error kind -> gemma_native.errors class name

def backend_info() -> Dict[str, Any]:
    """cpu_isa, available_isas, compiled_isas, cpu_features, num_threads,
    default_num_threads, max_pass_tokens, cpus {affinity, physical_cores, cgroup_quota, usable} and cuda
    {compiled, available, device_count, architectures, devices, reason}."""

def set_cpu_isa(name: str) -> None:
    """'auto', 'scalar', 'avx2', 'avx512', ... ('neon', 'neondot' on aarch64); DeviceError if
    this build or CPU lacks it."""

def cpu_isa() -> str: ...
def decode_x86_cpuid(leaf1_ecx: int, leaf7_ebx: int, leaf7_ecx: int, leaf7_edx: int,
                     leaf7_1_eax: int, xcr0: int) -> Dict[str, bool]:
    """The x86 feature decoding of backend_info()['cpu_features'] on given CPUID/XGETBV words."""

def decode_x86_model(leaf0_ebx: int, leaf0_edx: int, leaf0_ecx: int,
                     leaf1_eax: int) -> Tuple[str, int, int]: ...
def int8_prefetch_bytes_for(vendor: str, family: int, model: int, rows: int) -> int: ...
def decode_arm_hwcaps(hwcap: int, hwcap2: int) -> Dict[str, bool]:
    """The aarch64 feature decoding on given AT_HWCAP / AT_HWCAP2 words."""

def set_bf16_gemm(name: str) -> None:
    """'auto', 'amx', 'amx-emulated' or 'none'; DeviceError if this build or CPU lacks it."""

def bf16_gemm() -> str: ...
def set_int8_gemm(name: str) -> None:
    """Force the int8 GEMM of Q8_0R16 weights (prefill): 'auto', 'amx', 'amx-emulated' or
    'none' (the kernel set's own); every choice gives the same results."""
def int8_gemm() -> str: ...
def set_num_threads(n: int) -> None:
    """1..1024 kernel threads; 0 restores the default (the usable CPUs)."""

def num_threads() -> int: ...
DEFAULT_MAX_PASS_TOKENS: int
MAX_PASS_TOKENS_LIMIT: int  # the largest setting accepted (2^40)
def set_max_pass_tokens(n: int) -> None:
    """n >= 0 token rows per pass through the layers on the CPU (0: no limit)."""

def max_pass_tokens() -> int: ...
def core_peaks(threads: int) -> dict[str, float]:
    """FLOP/s of register-only multiply-add loops on `threads` threads, per instruction family
    the CPU has: 'fp32_fma_256', 'fp32_fma_512', 'bf16_dot_512', 'int8_dot_512' (none off
    x86-64)."""

def read_bandwidth(buffer: Any, threads: int, reps: int = 5) -> float:
    """Bytes/s of `threads` threads each summing its own slice of the C-contiguous `buffer`
    with wide loads, best of `reps` runs (the memory's streaming read rate)."""

def trim_heap() -> bool:
    """Returns the C heap's free pages to the system (glibc's malloc_trim); True if any were."""

def _cgroup_cpu_limit(proc_cgroup: str, mountinfo: str, root: str) -> float:
    """The cgroup CPU quota in CPUs (0: none) from the texts of /proc/self/cgroup and
    /proc/self/mountinfo, reading the controller files under ``root`` (for tests)."""

# --- ops on the CPU over numpy arrays (csrc/bindings/bind_ops.cc) ---

def embedding(table: _Array, dtype: int, ids: _Array, scale: float) -> _Array:
    """Rows ``ids`` (int32 [N]) of ``table`` [V, D] times ``scale``: float32 [N, D]."""

def rmsnorm(x: _Array, w: _Array, eps: float, offset: float) -> _Array:
    """x [N, D] / rms(x) * (offset + w): float32 [N, D]."""

def linear(x: _Array, w: _Array, dtype: int, bias: Optional[_Array] = None,
           float_activations: bool = False, bf16_activations: bool = False) -> _Array:
    """x [N, K] @ w[M, K]^T (+ bias [M]): float32 [N, M].  For GGML block weights the
    activations are quantized to 8 bits first unless ``float_activations``; float weights with
    ``bf16_activations`` run the bf16 compute mode's GEMM from 16 rows on."""

def block_diag_linear(x: _Array, w: _Array, dtype: int, b: Optional[_Array] = None,
                      bf16_activations: bool = False) -> _Array:
    """x [N, H*bs] through H independent [bs, bs] blocks ``w`` [H, bs, bs] (+ b [H, bs])."""

def conv1d(x: _Array, pos: _Array, w: _Array, bias: Optional[_Array] = None,
           state: Optional[_Array] = None) -> _Array:
    """Causal depthwise convolution of x [B, T, C] with taps w [K, C]; ``state``
    [B, K-1, C] (updated in place) holds the previous K-1 inputs."""

def rglru_scan(x: _Array, gate_x: _Array, gate_a: _Array, a_param: _Array, pos: _Array,
               h: _Array) -> _Array:
    """The RG-LRU recurrence over [B, T, C]; ``h`` [B, C] is read and updated in place."""

def rope(x: _Array, pos: _Array, rot_dims: int, base: float,
         linear_factor: float = 1.0) -> _Array:
    """Rotary embedding of x [N, H, hd] at positions ``pos`` [N] on the first ``rot_dims``."""

def attention(q: _Array, k: _Array, v: _Array, pos: _Array, window: int, scale: float,
              softcap: float = 0.0, k_cache: Optional[_Array] = None,
              v_cache: Optional[_Array] = None, count: Optional[_Array] = None) -> _Array:
    """Causal local attention: q [B, T, H, hd], k and v [B, T, KVH, hd]; with a ring cache
    (k_cache, v_cache [B, S, KVH, hd], count int64 [B], updated in place) or without one."""

def geglu(gate: _Array, up: _Array) -> _Array:
    """gelu_tanh(gate) * up, elementwise."""

def softcap(x: _Array, cap: float) -> _Array:
    """cap * tanh(x / cap), elementwise."""

def add(x: _Array, y: _Array) -> _Array:
    """x + y, elementwise (float32 arrays of one shape)."""

def quantize_q8_0(x: _Array) -> _Array:
    """float32 [rows, cols] -> Q8_0 blocks, uint8 [rows, cols / 32 * 34]."""

def pack_q8_0r16(blocks: _Array, in_place: bool = False,
                 out: Optional[_Array] = None) -> _Array:
    """Q8_0 blocks uint8 [rows, row_bytes] (rows % 16 == 0) -> the same values in the Q8_0R16
    layout, same shape: a new array, blocks itself rewritten when in_place, or out filled."""

def pack_bf16r32(w: _Array, in_place: bool = False,
                 out: Optional[_Array] = None) -> _Array:
    """bfloat16 bits uint16 [rows, cols] (rows % 32 == 0, cols % 16 == 0) -> the same values in
    the BF16R32 layout, same shape: a new array, w itself rewritten when in_place, or out
    filled."""

def quantize_activations(x: _Array, block: int) -> Tuple[_Array, _Array, Optional[_Array]]:
    """The 8-bit activations a quantized linear uses: (d float32 [rows, k/block], q int8
    [rows, k/block, block], bsums int16 [rows, k/256, 16] for block 256 else None)."""

def sample(logits: _Array, temperature: _Array, top_k: _Array, top_p: _Array, seed: _Array,
           counter: _Array) -> _Array:
    """One token per row of logits [B, V] with per-row parameters (float32, int32, float32,
    uint64, uint64 arrays of length B): int32 [B]."""

def sample_uniform(seed: int, counter: int) -> float:
    """The uniform number in [0, 1) that sample() draws for (seed, counter)."""

# --- the CUDA kernels (submodules cuda_emu and cuda) ---

class _DeviceOps:
    """The type of the submodules ``cuda_emu`` (the CUDA kernels on the CPU SIMT emulator)
    and ``cuda`` (the same kernels on a GPU, arrays copied in and out).  Each defines the ops
    that its ``ops_supported()`` lists, with the CPU ops' signatures; in a build without CUDA
    ``cuda`` has ``ops_supported`` only (it returns [])."""

    def ops_supported(self) -> List[str]: ...
    def embedding(self, table: _Array, dtype: int, ids: _Array, scale: float) -> _Array: ...
    def rmsnorm(self, x: _Array, w: _Array, eps: float, offset: float) -> _Array: ...
    def linear(self, x: _Array, w: _Array, dtype: int, bias: Optional[_Array] = None,
               float_activations: bool = False, bf16_activations: bool = False) -> _Array: ...
    def block_diag_linear(self, x: _Array, w: _Array, dtype: int,
                          b: Optional[_Array] = None, bf16_activations: bool = False) -> _Array: ...
    def conv1d(self, x: _Array, pos: _Array, w: _Array, bias: Optional[_Array] = None,
               state: Optional[_Array] = None) -> _Array: ...
    def rglru_scan(self, x: _Array, gate_x: _Array, gate_a: _Array, a_param: _Array,
                   pos: _Array, h: _Array) -> _Array: ...
    def rope(self, x: _Array, pos: _Array, rot_dims: int, base: float,
             linear_factor: float = 1.0) -> _Array: ...
    def attention(self, q: _Array, k: _Array, v: _Array, pos: _Array, window: int,
                  scale: float, softcap: float = 0.0, k_cache: Optional[_Array] = None,
                  v_cache: Optional[_Array] = None, count: Optional[_Array] = None) -> _Array: ...
    def geglu(self, gate: _Array, up: _Array) -> _Array: ...
    def softcap(self, x: _Array, cap: float) -> _Array: ...
    def add(self, x: _Array, y: _Array) -> _Array: ...

cuda_emu: _DeviceOps
cuda: _DeviceOps

# --- op timing with device-resident buffers (csrc/bindings/bind_device_bench.cc) ---

def device_bench(device: str, op: str, params: Dict[str, int], iters: int = 20) -> Dict[str, Any]:
    """Seconds per call of ``op`` ('linear', 'attention_decode', 'rglru_scan', 'rmsnorm') on
    ``device`` ('cpu', 'cuda-emu', 'cuda[:N]'), with bytes, flops and the rates."""

# --- models (csrc/bindings/bind_models.cc) ---

class State:
    """What one sequence carries between calls, in the model's backend memory (one call at a
    time).  The same class for every model family."""

    @property
    def pos(self) -> int:
        """Tokens consumed so far (the position of the next token)."""
    @property
    def nbytes(self) -> int:
        """Bytes of memory the state holds now."""
    def clone(self) -> State: ...
    def saved_floats(self, pos: int) -> int:
        """Length of save() for a state at position pos."""
    def save(self) -> _Array:
        """A float32 copy of the state (its length depends only on pos), wherever it lives."""
    def restore(self, data: _Array, pos: int) -> None:
        """Overwrites the state with data from save() and sets its position."""

def check_config(family: str, config: Dict[str, Any]) -> None:
    """Validates an engine config dict ('griffin' or 'gemma') as the model constructor does."""

class GriffinModel:
    config_keys: Dict[str, str]  # engine config key -> "required" | "optional"
    def __init__(self, config: Dict[str, Any], weights: Dict[str, _WeightEntry],
                 device: str = "cpu") -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def graph_replays(self) -> int:
        """Decode steps run from a captured graph (device backends with graphs)."""
    def new_state(self) -> State: ...
    @property
    def max_context(self) -> int: ...
    def forward(self, tokens: _Array, states: Sequence[State],
                all_positions: bool = False) -> _Array:
        """tokens int32 [B, T], one state per row: logits float32 [B, T, V] or [B, V]."""

class GemmaModel:
    config_keys: Dict[str, str]  # engine config key -> "required" | "optional"
    def __init__(self, config: Dict[str, Any], weights: Dict[str, _WeightEntry],
                 device: str = "cpu") -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def graph_replays(self) -> int:
        """Decode steps run from a captured graph (device backends with graphs)."""
    def new_state(self) -> State: ...
    @property
    def max_context(self) -> int: ...
    def forward(self, tokens: _Array, states: Sequence[State],
                all_positions: bool = False) -> _Array:
        """tokens int32 [B, T], one state per row: logits float32 [B, T, V] or [B, V]."""

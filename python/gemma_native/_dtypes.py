"""Weight dtypes: numpy has no bfloat16, so bf16 tensors travel as ``(uint16_bits, "bfloat16")``.

A *weight* argument anywhere in the package may be a float32 or float16 numpy array, or a pair
``(array, dtype_name)`` with dtype_name one of "float32", "bfloat16", "float16" (for bfloat16
the array holds the raw uint16 bits).
"""

from __future__ import annotations

import mmap
import sys

import numpy as np

from . import _core
from .errors import DTypeError, InvalidArgumentError, ShapeError
from .loading import ggml

# The engine's packed bf16 layout (not a file format): bfloat16 linear matrices on the CPU, 32
# rows per panel in the exact kernels' lane order (docs/model-math.md, "The packed bf16
# layout").  Same values and bytes; the loader lays matrices out so.
BF16R32 = "BF16R32"
R32_ROWS, R32_COL_STEP = 32, 16
# The engine's weight dtype codes (csrc/include/gemma_native/dtype.h, exported by _core): the
# float dtypes here, the block formats in QUANT_CODES, the packed layouts in PACKED_CODES.
DTYPE_CODES = {name: code for name, code in _core.DTYPE_CODES.items()
               if name not in _core.QUANT_BLOCKS and name != BF16R32}
# Float layouts the kernels read but nothing loads as: name -> engine dtype code.
PACKED_CODES = {BF16R32: _core.DTYPE_CODES[BF16R32]}
# The engine's own block format (not a GGML type): Q8_0 blocks of 16 consecutive rows
# interleaved, multiplied with whole-block integer sums (docs/model-math.md, "The int8 weight
# format").  dtype="int8" turns linear matrices into it on the CPU.
Q8_0R16 = "Q8_0R16"
R16_ROWS = 16
# Block formats the kernels read directly: (uint8 blocks [rows, row_bytes], name) pairs
# (name -> engine dtype code): the GGML ones from the GGML type table, and Q8_0R16.
QUANT_CODES = {**ggml.NATIVE_QUANT_CODES, Q8_0R16: _core.DTYPE_CODES[Q8_0R16]}
# The block format that dtype "int8" quantizes to.
INT8_FORMAT = "Q8_0"
# Engine dtype code -> its name ("float32" ... "Q8_0" ...).
CODE_NAMES = {code: name for name, code in {**DTYPE_CODES, **QUANT_CODES, **PACKED_CODES}.items()}
_ALIASES = {"f32": "float32", "fp32": "float32", "bf16": "bfloat16", "f16": "float16",
            "fp16": "float16", "half": "float16", "float": "float32", "i8": "int8",
            "q8_0": "int8"}
# dtype names a model can be loaded as: the floats, and "int8" (weights quantized at load to
# GGML Q8_0 blocks: 32 values with one half-precision scale).
LOAD_DTYPES = (*DTYPE_CODES, "int8")


def canonical_dtype(name) -> str:
    if isinstance(name, np.dtype) or (isinstance(name, type) and issubclass(name, np.generic)):
        name = np.dtype(name).name
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in LOAD_DTYPES:
        raise DTypeError(f"unsupported weight dtype {name!r}; use one of {sorted(LOAD_DTYPES)}")
    return key


def f32_to_bf16_bits(x) -> np.ndarray:
    """Round float32 to bfloat16 (nearest even), returning the uint16 bits."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def bf16_bits_to_f32(bits) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def bf16_round(x) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16, returned as float32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


def split_weight(w):
    """Returns (array, dtype_name) for any accepted weight form."""
    if isinstance(w, tuple):
        if len(w) != 2:
            raise DTypeError("a weight tuple must be (array, dtype_name)")
        if isinstance(w[1], str) and w[1].upper() == BF16R32:
            arr = np.asarray(w[0])
            _r32_shape(arr)
            return arr, BF16R32
        if isinstance(w[1], str) and w[1].upper() in QUANT_CODES:
            arr = np.asarray(w[0])
            if arr.dtype != np.uint8 or arr.ndim != 2:
                raise DTypeError(f"{w[1]} weights must be uint8 blocks [rows, row_bytes]")
            return arr, w[1].upper()
        arr, name = np.asarray(w[0]), canonical_dtype(w[1])
        if name == "int8":
            raise DTypeError("int8 weights travel as Q8_0 blocks: pass (uint8_blocks, 'Q8_0')")
        if name == "float32" and arr.dtype != np.float32:
            raise DTypeError(f"float32 weight given as {arr.dtype} array")
        if name in ("bfloat16", "float16") and arr.dtype.itemsize != 2:
            raise DTypeError(f"{name} weight must be a 2-byte array, got {arr.dtype}")
        return arr, name
    arr = np.asarray(w)
    if arr.dtype == np.float32:
        return arr, "float32"
    if arr.dtype == np.float16:
        return arr, "float16"
    raise DTypeError(
        f"weights must be float32 or float16 arrays, or (uint16_bits, 'bfloat16'); got {arr.dtype}")


def _r16_shape(blocks: np.ndarray) -> tuple[int, int]:
    rows, row_bytes = blocks.shape
    if blocks.dtype != np.uint8 or row_bytes % 34 != 0 or rows % R16_ROWS != 0:
        raise DTypeError(f"Q8_0R16 needs uint8 blocks [rows, row_bytes] with rows % {R16_ROWS} == 0 "
                         f"and row_bytes % 34 == 0, got {blocks.dtype} {blocks.shape}")
    return rows // R16_ROWS, row_bytes // 34


def pack_q8_0r16(blocks, in_place: bool = False, out=None) -> np.ndarray:
    """Q8_0 blocks [rows, row_bytes] (rows % 16 == 0) in the Q8_0R16 layout, same shape: per group
    of 16 rows and block, the 16 half scales, then for k-step j = 0..7 and row r the 4 values
    4j..4j+3 of the row's block as unsigned bytes q + 128.  in_place: rewrites ``blocks`` (a
    writable C-contiguous uint8 array) and returns it; out: writes into that array (same shape,
    writable, C-contiguous) and returns it."""
    blocks = np.asarray(blocks)
    _r16_shape(blocks)
    return _core.pack_q8_0r16(blocks if in_place else np.ascontiguousarray(blocks), in_place, out)


def unpack_q8_0r16(packed) -> np.ndarray:
    """The Q8_0 blocks [rows, row_bytes] that pack_q8_0r16 turned into ``packed``."""
    packed = np.asarray(packed)
    groups, nb = _r16_shape(packed)
    p = packed.reshape(groups, nb, 34 * R16_ROWS)
    d = p[..., :2 * R16_ROWS].reshape(groups, nb, R16_ROWS, 2).transpose(0, 2, 1, 3)
    q = (p[..., 2 * R16_ROWS:] ^ np.uint8(0x80)).reshape(groups, nb, 8, R16_ROWS, 4)
    q = q.transpose(0, 3, 1, 2, 4).reshape(groups, R16_ROWS, nb, 32)
    return np.concatenate([d, q], axis=3).reshape(packed.shape)


def _r32_shape(w: np.ndarray) -> tuple[int, int]:
    if w.dtype != np.uint16 or w.ndim != 2:
        raise DTypeError(f"{BF16R32} weights are bfloat16 bits, a 2-D uint16 array; got "
                         f"{w.dtype} of shape {list(w.shape)}")
    if w.shape[0] % R32_ROWS or w.shape[1] % R32_COL_STEP:
        raise ShapeError(f"{BF16R32} weights need rows % {R32_ROWS} == 0 and cols % "
                         f"{R32_COL_STEP} == 0; got {list(w.shape)}")
    return w.shape


def pack_bf16r32(bits, in_place: bool = False, out=None) -> np.ndarray:
    """bfloat16 bits uint16 [rows, cols] (rows % 32 == 0, cols % 16 == 0) in the BF16R32 layout,
    same shape and values: per panel of 32 rows, per lane l < 8 and pair p < cols / 16, the 32
    rows' words value[16p + l] | value[16p + l + 8] << 16.  in_place: rewrites ``bits`` (a
    writable C-contiguous array) and returns it; out: writes into that array (same shape,
    writable, C-contiguous) and returns it."""
    _r32_shape(np.asarray(bits))
    return _core.pack_bf16r32(bits if in_place else np.ascontiguousarray(bits), in_place, out)


def unpack_bf16r32(packed) -> np.ndarray:
    """The bfloat16 bits uint16 [rows, cols] that pack_bf16r32 turned into ``packed``."""
    packed = np.asarray(packed)
    rows, cols = _r32_shape(packed)
    # [panel q][lane l][pair p][row t][half h] -> [q][t][p][h][l]: value 16p + 8h + l of row t.
    words = packed.reshape(rows // R32_ROWS, 8, cols // R32_COL_STEP, R32_ROWS, 2)
    return np.ascontiguousarray(words.transpose(0, 3, 2, 4, 1)).reshape(rows, cols)


def weight_to_f32(w) -> np.ndarray:
    arr, name = split_weight(w)
    if name == BF16R32:
        arr, name = unpack_bf16r32(arr), "bfloat16"
    if name == Q8_0R16:
        arr, name = unpack_q8_0r16(arr), INT8_FORMAT
    if name in QUANT_CODES:
        info = ggml.ggml_type(name)
        cols = arr.shape[1] // info.type_size * info.block_size
        return ggml.dequantize(arr.reshape(-1), name, (arr.shape[0], cols), np.float32)
    if name == "bfloat16":
        return bf16_bits_to_f32(arr)
    return np.asarray(arr).astype(np.float32) if name == "float16" else np.asarray(arr, np.float32)


def convert_weight(arr: np.ndarray, src: str, dst: str):
    """Converts an array of dtype ``src`` to ``dst`` (copies only when they differ)."""
    if src == dst:
        return arr
    f = bf16_bits_to_f32(arr) if src == "bfloat16" else np.asarray(arr, dtype=np.float32)
    if dst == "float32":
        return np.ascontiguousarray(f, dtype=np.float32)
    if dst == "float16":
        return np.ascontiguousarray(f.astype(np.float16))
    return f32_to_bf16_bits(f)


def to_engine(arr: np.ndarray, src: str, dst: str):
    """A weight matrix for the engine as (array, dtype code): converted to the float dtype
    ``dst``, or for ``dst == "int8"`` quantized to Q8_0 blocks (2-D matrices whose rows hold
    whole blocks of 32; anything else keeps ``src``)."""
    if dst != "int8":
        out = np.ascontiguousarray(convert_weight(arr, src, dst))
        if not np.may_share_memory(out, arr):
            _drop_mapped_pages(arr)  # a copy: the file's pages need not stay resident
        return out, DTYPE_CODES[dst]
    q8 = ggml.ggml_type(INT8_FORMAT)
    if arr.ndim != 2 or arr.shape[1] % q8.block_size != 0:
        return np.ascontiguousarray(convert_weight(arr, src, src)), DTYPE_CODES[src]
    from . import _core

    rows, cols = arr.shape
    out = np.empty((rows, q8.nbytes(cols)), np.uint8)
    step = max(1, (1 << 24) // max(cols, 1))  # ~64 MB of float32 at a time
    for r in range(0, rows, step):
        chunk = convert_weight(arr[r:r + step], src, "float32")
        out[r:r + step] = _core.quantize_q8_0(np.ascontiguousarray(chunk, dtype=np.float32))
        if arr.flags.c_contiguous:  # rows r.. are one range: at most a chunk stays resident
            _drop_mapped_pages(arr[r:r + step])
    if not arr.flags.c_contiguous:
        _drop_mapped_pages(arr)
    return out, QUANT_CODES[INT8_FORMAT]


def _drop_mapped_pages(arr: np.ndarray) -> None:
    """If arr is a view of a file mapping (mmap=True), drops its pages from this process's
    mapping (madvise MADV_DONTNEED: they stay in the page cache, and a later read would fault
    them back in), so that a matrix the loader has copied does not also count in the RSS."""
    base = arr
    while isinstance(base, (np.ndarray, memoryview)):  # np.frombuffer's base is a memoryview
        base = base.base if isinstance(base, np.ndarray) else base.obj
    if not isinstance(base, mmap.mmap) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        off = arr.ctypes.data - np.frombuffer(base, np.uint8).ctypes.data
        lo = off // mmap.PAGESIZE * mmap.PAGESIZE
        base.madvise(mmap.MADV_DONTNEED, lo, off + arr.nbytes - lo)
    except (ValueError, OSError):  # a closed mapping, or a kernel that refuses: keep the pages
        pass


def drop_converted_sources(sources, weights: dict) -> None:
    """After loading with mmap=True: drops the mapped pages (see _drop_mapped_pages) of every
    source array (a tensor's bytes in the file) that no engine weight is a view of, so that the
    file's pages read to convert a tensor do not stay resident beside its copy -- the small
    tensors used as stored (norms, biases) keep the mapping open.  to_engine and bf16_layout
    already drop each large matrix's pages as they copy it (which bounds the peak); this pass
    covers every other copy (GGUF dequantization, norms widened to float32, Q8_0 repacked as
    Q8_0R16) in one place."""
    kept = [arr for arr, _ in weights.values() if arr.base is not None]
    for src in sources:
        if not any(np.may_share_memory(src, k) for k in kept):
            _drop_mapped_pages(src)


def bf16_layout(weights: dict, device: str) -> dict:
    """Lays out the engine weights {name: (array, dtype code)} of a model for the CPU, in place:
    every 2-D bfloat16 matrix with rows % 32 == 0 and cols % 16 == 0 becomes BF16R32, which the
    exact and the bf16 compute mode's kernels read without repacking; exact results are the same
    bit for bit as from the row-major matrix.  The embedding table too: as the tied output layer
    it is the largest matrix of a decode step (a quarter of RecurrentGemma 2B's bytes), which
    the packed matrix-vector product streams at the memory's read rate where the row-major one
    reached three quarters of it; its lookups pick a row's words out of its panel.  An array
    that owns its memory and that nothing else refers to (no other entry, no view of it: the
    loader's own conversions and random weights) is packed in place, which costs no memory at
    all; any other is copied ~32 MB at a time (_packed_copy).  Returns weights (unchanged for
    another device)."""
    if device != "cpu":
        return weights
    bf16 = DTYPE_CODES["bfloat16"]
    return _relayout(weights, lambda arr, code: (code == bf16 and arr.ndim == 2
                                                 and arr.shape[0] % R32_ROWS == 0
                                                 and arr.shape[1] % R32_COL_STEP == 0),
                     pack_bf16r32, PACKED_CODES[BF16R32], np.uint16, R32_ROWS)


def _relayout(weights: dict, matches, pack, new_code: int, dtype, group: int) -> dict:
    """weights[name] = (pack(arr), new_code) for every entry (arr, code) that matches(arr,
    code), in place; arr itself rewritten when it is a writable C-contiguous `dtype` array that
    nothing else refers to, else a copy packed chunk by chunk (_packed_copy)."""
    # An array rewritten in place must be seen by nothing else: not another entry, not a view
    # of it (its .base), not an outside name.  Each of those is a reference more than an array
    # held as this loop holds one (by a tuple in a dict and a local), which is measured here on
    # the running interpreter rather than assumed (the stack's share differs between versions).
    # A view of the whole of an array that only the view refers to (random weights are raw
    # 64-bit draws seen as bfloat16 bits) may be rewritten too.
    probe = np.empty(0)
    held = {"probe": (probe, 0)}
    a_refs, entry_refs = sys.getrefcount(probe), sys.getrefcount(held["probe"])
    probe_view = np.empty(0, np.uint64).view(np.uint16)
    probe_base = probe_view.base  # held as b below: by the view and a local
    base_refs = sys.getrefcount(probe_base)
    for name in list(weights):
        arr, code = weights[name]
        if matches(arr, code):
            b = arr.base
            owns = b is None or (type(b) is np.ndarray and b.base is None
                                 and b.nbytes == arr.nbytes and b.flags.writeable
                                 and sys.getrefcount(b) <= base_refs)
            alone = (owns and sys.getrefcount(arr) <= a_refs
                     and sys.getrefcount(weights[name]) <= entry_refs)
            del b
            in_place = (alone and arr.flags.writeable and arr.flags.c_contiguous
                        and arr.dtype == dtype)
            weights[name] = (pack(arr, in_place=True) if in_place
                             else _packed_copy(arr, pack, group), new_code)
        del arr
    return weights


def _packed_copy(arr: np.ndarray, pack, group: int) -> np.ndarray:
    """pack(arr) into a new array, ~32 MB of rows at a time (whole groups of `group` rows:
    both packed layouts keep a group in the bytes of its rows), the source pages of each chunk
    dropped once it is packed (a memory-mapped file): the load peaks at the packed weights plus
    one chunk, not plus the whole matrix (the 2B's bf16 embedding table is 1.3 GB)."""
    if not arr.flags.c_contiguous:
        out = pack(arr, in_place=False)
        _drop_mapped_pages(arr)
        return out
    out = np.empty(arr.shape, arr.dtype)
    # 32 MB: loading a 2B bf16 folder took about as long as packing each matrix whole; with
    # 8 MB chunks (more page drops amid the mapping) it took 1.5-3x longer
    step = max(1, (32 << 20) // max(1, arr[:group].nbytes)) * group
    for r in range(0, arr.shape[0], step):
        pack(arr[r:r + step], out=out[r:r + step])
        _drop_mapped_pages(arr[r:r + step])
    return out


def int8_layout(weights: dict, activations: str, device: str) -> dict:
    """The engine weights {name: (array, dtype code)} of a model loaded with dtype="int8", for its
    compute mode: on the CPU with int8 activations every Q8_0 matrix with rows % 16 == 0, the
    embedding table included (its rows are looked up from their groups; as the tied output
    layer it is a linear matrix like the others), goes to Q8_0R16, whose whole-block integer
    sums run at the integer unit's rate.  Anything else is left as it is (float32
    activations widen Q8_0 rows; the CUDA backend reads Q8_0).  In place, as bf16_layout: a
    matrix nothing else holds (the loader's own quantization) is rewritten where it is, any
    other is copied ~32 MB at a time -- a new dict held both layouts of every matrix (5.5 GB
    at the peak for RecurrentGemma 2B's 2.7 GB).  Returns weights."""
    if activations != "int8" or device != "cpu":
        return weights
    q8 = QUANT_CODES[INT8_FORMAT]
    return _relayout(weights, lambda arr, code: (code == q8 and arr.ndim == 2
                                                 and arr.shape[0] % R16_ROWS == 0),
                     pack_q8_0r16, QUANT_CODES[Q8_0R16], np.uint8, R16_ROWS)



# The CPU kernel sets whose BF16R32 kernels beat the row-major ones (on the AVX2 set the decode
# GEMV reads it slower: its 8-lane registers give one panel too few FMA chains).
PACKING_SETS = ("avx512", "avx512vnni")


def check_pack_weights(pack_weights) -> None:
    if pack_weights is not None and not isinstance(pack_weights, bool):
        raise InvalidArgumentError(f"pack_weights must be None, True or False, got {pack_weights!r}")


def cpu_layout(weights: dict, activations: str, device: str, pack_weights: bool | None) -> dict:
    """The layouts the loader gives a model's engine weights: int8_layout, then bf16_layout when
    pack_weights is True, or None and the CPU kernel set in use is one of PACKING_SETS."""
    weights = int8_layout(weights, activations, device)
    if pack_weights is None:
        pack_weights = _core.backend_info()["cpu_isa"] in PACKING_SETS
    return bf16_layout(weights, device) if pack_weights else weights

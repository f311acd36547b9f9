"""GGML tensor types: the one table of their layouts, and numpy dequantizers.

:data:`GGML_TYPES` maps each ggml type id (ggml.h ``enum ggml_type``) to a :class:`GGMLType`:
its name, how many values one block holds and how many bytes it takes (from ggml-common.h's
``block_*`` structs), and whether the native engine takes the layout as stored -- as a float
weight (F32, F16, BF16) or as quantized blocks its kernels multiply directly (the
``quant_code`` is then the engine's ``DType`` code, read from ``_core.DTYPE_CODES``; the C++
side's block structs are in quant.h, and tests check that both agree on every block size).  The GGUF reader, the weight
helpers in ``gemma_native._dtypes`` and the numpy reference ops all read this table.

Dequantization
--------------
:func:`dequantize` turns a tensor's raw bytes into floats.  :data:`DEQUANTIZABLE_TYPES`: F32,
F16, BF16, F64, I8, I16, I32, I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
Q8_K, IQ4_NL, IQ4_XS.  Each block layout follows ggml's ``block_*`` structs and
``dequantize_row_*`` functions; the float32 results are bit-identical to ggml's scalar
reference (same operations in the same order, no fused multiply-add) and to
``gguf.quants.dequantize``.  Work is vectorised over all blocks of a chunk of about one million
values; there is no Python loop per block.  :func:`unpack_blocks` exposes the integer fields of
the natively multiplied block formats (the reference ops build exact integer dot products from
them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from .. import _core
from ..errors import DTypeError, UnsupportedModelError

__all__ = [
    "DEQUANTIZABLE_TYPES",
    "GGML_TYPES",
    "GGMLType",
    "NATIVE_QUANT_CODES",
    "block_size_of",
    "dequantize",
    "ggml_type",
    "unpack_blocks",
]

_QK_K = 256  # values per super-block of the K-quants


@dataclass(frozen=True)
class GGMLType:
    """Layout of one ggml tensor type."""

    type_id: int
    name: str
    block_size: int  # values per block
    type_size: int  # bytes per block
    quant_code: int | None = None  # engine DType code of a block format the kernels multiply
    float_dtype: str | None = None  # the engine's float dtype for a plain float layout

    @property
    def native(self) -> bool:
        """True when the engine takes this layout as stored (no dequantization at load)."""
        return self.quant_code is not None or self.float_dtype is not None

    def nbytes(self, n_values: int) -> int:
        """Bytes of ``n_values`` values (a whole number of blocks)."""
        return n_values // self.block_size * self.type_size


def _types(*rows: GGMLType) -> dict[int, GGMLType]:
    return {t.type_id: t for t in rows}


# Ids 4, 5 (Q4_2, Q4_3), 31-33 and 36-38 (repacked CPU layouts) are removed types that may
# not appear in files; they are "unknown" here as they are for llama.cpp.
GGML_TYPES: dict[int, GGMLType] = _types(
    GGMLType(0, "F32", 1, 4, float_dtype="float32"),
    GGMLType(1, "F16", 1, 2, float_dtype="float16"),
    GGMLType(2, "Q4_0", 32, 2 + 32 // 2),  # half d; u8 qs[16]
    GGMLType(3, "Q4_1", 32, 2 + 2 + 32 // 2),  # half d, m; u8 qs[16]
    GGMLType(6, "Q5_0", 32, 2 + 4 + 32 // 2),  # half d; u8 qh[4]; u8 qs[16]
    GGMLType(7, "Q5_1", 32, 2 + 2 + 4 + 32 // 2),  # half d, m; u8 qh[4]; u8 qs[16]
    GGMLType(8, "Q8_0", 32, 2 + 32),  # half d; i8 qs[32]
    GGMLType(9, "Q8_1", 32, 2 + 2 + 32),  # half d, s; i8 qs[32]
    GGMLType(10, "Q2_K", _QK_K, _QK_K // 16 + _QK_K // 4 + 2 + 2),  # scales, qs, d, dmin
    GGMLType(11, "Q3_K", _QK_K, _QK_K // 8 + _QK_K // 4 + 12 + 2),  # hmask, qs, scales, d
    GGMLType(12, "Q4_K", _QK_K, 2 + 2 + 12 + _QK_K // 2),  # d, dmin, scales, qs
    GGMLType(13, "Q5_K", _QK_K, 2 + 2 + 12 + _QK_K // 8 + _QK_K // 2),  # + qh
    GGMLType(14, "Q6_K", _QK_K, _QK_K // 2 + _QK_K // 4 + _QK_K // 16 + 2),  # ql, qh, scales, d
    GGMLType(15, "Q8_K", _QK_K, 4 + _QK_K + 2 * (_QK_K // 16)),  # float d; i8 qs; i16 bsums
    GGMLType(16, "IQ2_XXS", _QK_K, 2 + _QK_K // 4),
    GGMLType(17, "IQ2_XS", _QK_K, 2 + _QK_K // 4 + _QK_K // 32),
    GGMLType(18, "IQ3_XXS", _QK_K, 2 + 3 * (_QK_K // 8)),
    GGMLType(19, "IQ1_S", _QK_K, 2 + _QK_K // 8 + _QK_K // 16),
    GGMLType(20, "IQ4_NL", 32, 2 + 32 // 2),
    GGMLType(21, "IQ3_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
    GGMLType(22, "IQ2_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 16),
    GGMLType(23, "IQ4_XS", _QK_K, 2 + 2 + _QK_K // 64 + _QK_K // 2),  # d, scales_h/l, qs
    GGMLType(24, "I8", 1, 1),
    GGMLType(25, "I16", 1, 2),
    GGMLType(26, "I32", 1, 4),
    GGMLType(27, "I64", 1, 8),
    GGMLType(28, "F64", 1, 8),
    GGMLType(29, "IQ1_M", _QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
    GGMLType(30, "BF16", 1, 2, float_dtype="bfloat16"),
    GGMLType(34, "TQ1_0", _QK_K, (_QK_K - 4 * _QK_K // 64) // 5 + _QK_K // 64 + 2),
    GGMLType(35, "TQ2_0", _QK_K, _QK_K // 4 + 2),
    GGMLType(39, "MXFP4", 32, 1 + 32 // 2),
    GGMLType(40, "NVFP4", 64, 4 + 64 // 2),
    GGMLType(41, "Q1_0", 128, 2 + 128 // 8),
)
# The engine's codes for the block formats its kernels multiply come from the engine itself
# (_core.DTYPE_CODES / QUANT_BLOCKS, generated from csrc/include/gemma_native/dtype.h).
GGML_TYPES = {i: replace(t, quant_code=_core.DTYPE_CODES[t.name])
              if t.name in _core.QUANT_BLOCKS else t for i, t in GGML_TYPES.items()}
_BY_NAME: dict[str, GGMLType] = {t.name: t for t in GGML_TYPES.values()}

#: Block formats the native kernels multiply as stored: name -> engine DType code.
NATIVE_QUANT_CODES: dict[str, int] = {
    t.name: t.quant_code for t in sorted(GGML_TYPES.values(), key=lambda t: t.quant_code or 0)
    if t.quant_code is not None}


def ggml_type(name: str) -> GGMLType:
    """The layout of a ggml type name ("Q4_K"); UnsupportedModelError if there is none."""
    info = _BY_NAME.get(name) if isinstance(name, str) else None
    if info is None:
        raise UnsupportedModelError(f"unknown ggml type {name!r}")
    return info


def block_size_of(name: str) -> tuple[int, int]:
    """(values per block, bytes per block) of a ggml type name, e.g. "Q4_K" -> (256, 144)."""
    info = ggml_type(name)
    return info.block_size, info.type_size


# --------------------------------------------------------------------------------------
# Dequantizers: fn(blocks, out) writes (n_blocks, block_size) float32 values for
# (n_blocks, type_size) uint8 blocks into ``out``.  Every float operation is a separate
# numpy ufunc call (float32 in, float32 out), in ggml's order, so results are bit-exact.
# --------------------------------------------------------------------------------------

# Values dequantized per chunk: large enough to amortise numpy call overhead, small enough
# that the temporaries stay in cache-friendly sizes.
_CHUNK_VALUES = 1 << 21

# Unquantized layouts: numpy dtype of the stored values.
_PLAIN: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}

_SHIFT_2BIT = np.array([0, 2, 4, 6], dtype=np.uint8)
_BITS_8 = np.arange(8, dtype=np.uint8)
# Non-linear 4-bit codebook of IQ4_NL / IQ4_XS (ggml-common.h kvalues_iq4nl).
_KVALUES_IQ4NL = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float32
)


def _half(b: np.ndarray, at: int) -> np.ndarray:
    """Column of float16 values at byte ``at`` of each block, as float32 of shape (n, 1)."""
    return np.ascontiguousarray(b[:, at : at + 2]).view("<f2").astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k): low nibbles of all bytes, then high nibbles."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 4) little-endian u32 bit fields -> (n, 32) of 0/16 (bit j belongs to value j)."""
    return np.unpackbits(qh, axis=1, bitorder="little") << np.uint8(4)


def _k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit (scale, min) pairs packed in 12 bytes (ggml get_scale_min_k4)."""
    sc = np.concatenate(
        [s[:, 0:4] & np.uint8(63), (s[:, 8:12] & np.uint8(0x0F)) | ((s[:, 0:4] >> np.uint8(6)) << np.uint8(4))],
        axis=1,
    )
    mn = np.concatenate(
        [s[:, 4:8] & np.uint8(63), (s[:, 8:12] >> np.uint8(4)) | ((s[:, 4:8] >> np.uint8(6)) << np.uint8(4))],
        axis=1,
    )
    return sc, mn


def _k_low_nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, 128) bytes -> (n, 8, 32): sub-block 2j = low nibbles of bytes 32j.., 2j+1 = high."""
    n = qs.shape[0]
    q = qs.reshape(n, 4, 1, 32)
    return np.concatenate([q & np.uint8(0x0F), q >> np.uint8(4)], axis=2).reshape(n, 8, 32)


def unpack_blocks(name: str, b: np.ndarray) -> dict[str, np.ndarray]:
    """Integer fields of (n, type_size) uint8 blocks of a natively multiplied format.

    Q8_0 / Q4_0 / Q5_0: ``d`` (n, 1) float32 scales, ``q`` (n, 32) int8 values (x = d q).
    Q4_K: ``d``, ``dmin`` (n, 1) float32, ``sc``, ``mn`` (n, 8) uint8 six-bit sub-block scales
    and mins, ``q`` (n, 8, 32) uint8 four-bit values (x = d sc q - dmin mn).
    Q6_K: ``d`` (n, 1) float32, ``sc`` (n, 16) int8, ``q`` (n, 16, 16) int8 in [-32, 31]
    (x = d sc q)."""
    if name == "Q8_0":
        return {"d": _half(b, 0), "q": b[:, 2:34].view(np.int8)}
    if name == "Q4_0":
        return {"d": _half(b, 0), "q": _nibbles(b[:, 2:18]).view(np.int8) - np.int8(8)}
    if name == "Q5_0":
        q = (_nibbles(b[:, 6:22]) | _fifth_bits(b[:, 2:6])).view(np.int8) - np.int8(16)
        return {"d": _half(b, 0), "q": q}
    if name == "Q4_K":
        sc, mn = _k_scales(b[:, 4:16])
        return {"d": _half(b, 0), "dmin": _half(b, 2), "sc": sc, "mn": mn,
                "q": _k_low_nibbles(b[:, 16:144])}
    if name == "Q6_K":
        n = b.shape[0]
        ql = b[:, 0:128].reshape(n, 2, 1, 2, 32)  # [half, -, first/second 32 bytes, l]
        qh = b[:, 128:192].reshape(n, 2, 1, 32)
        # Within each half of 128 values, quarter k = 2*nibble + which: nibble 0 = low, 1 = high.
        low = np.concatenate([ql & np.uint8(0x0F), ql >> np.uint8(4)], axis=2).reshape(n, 2, 4, 32)
        high = (qh >> _SHIFT_2BIT.reshape(1, 1, 4, 1)) & np.uint8(3)
        q = (low | (high << np.uint8(4))).view(np.int8) - np.int8(32)
        return {"d": _half(b, 208), "sc": b[:, 192:208].view(np.int8), "q": q.reshape(n, 16, 16)}
    raise UnsupportedModelError(f"{name} is not a block format the engine multiplies natively "
                                f"(those are {', '.join(NATIVE_QUANT_CODES)})")


def _deq_scaled(name: str) -> Callable[[np.ndarray, np.ndarray], None]:
    def fn(b: np.ndarray, out: np.ndarray) -> None:  # x = d q
        p = unpack_blocks(name, b)
        np.multiply(p["d"], p["q"], out=out, dtype=np.float32)

    return fn


def _deq_q4_1(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    m = _half(b, 2)
    np.multiply(d, _nibbles(b[:, 4:20]), out=out, dtype=np.float32)
    np.add(out, m, out=out)


def _deq_q5_1(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    m = _half(b, 2)
    q = _nibbles(b[:, 8:24]) | _fifth_bits(b[:, 4:8])
    np.multiply(d, q, out=out, dtype=np.float32)
    np.add(out, m, out=out)


def _deq_q2_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    scales = b[:, 0:16]
    qs = b[:, 16:80]
    d = _half(b, 80)
    dmin = _half(b, 82)
    dl = (d * (scales & np.uint8(0x0F)).astype(np.float32))[:, :, None]
    ml = (dmin * (scales >> np.uint8(4)).astype(np.float32))[:, :, None]
    # value index = half*128 + shift_index*32 + l; its scale is index // 16.
    q = (qs.reshape(n, 2, 1, 32) >> _SHIFT_2BIT.reshape(1, 1, 4, 1)) & np.uint8(3)
    o = out.reshape(n, 16, 16)
    np.multiply(dl, q.reshape(n, 16, 16), out=o, dtype=np.float32)
    np.subtract(o, ml, out=o)


def _deq_q3_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    hmask = b[:, 0:32]
    qs = b[:, 32:96]
    s = b[:, 96:108]
    d = _half(b, 108)
    # 16 six-bit scales: low 4 bits from bytes 0..7 (low nibbles, then high nibbles), high
    # 2 bits from bytes 8..11 (bits 0-1 for scales 0-3, 2-3 for 4-7, 4-5 for 8-11, 6-7 for 12-15).
    low = _nibbles(s[:, 0:8])
    high = ((s[:, None, 8:12] >> _SHIFT_2BIT.reshape(1, 4, 1)) & np.uint8(3)).reshape(n, 16)
    sc = (low | (high << np.uint8(4))).view(np.int8) - np.int8(32)
    dl = (d * sc.astype(np.float32))[:, :, None]
    low_q = (qs.reshape(n, 2, 1, 32) >> _SHIFT_2BIT.reshape(1, 1, 4, 1)) & np.uint8(3)
    # hmask bit (half*4 + shift_index) of byte l is set when the value has no -4 offset.
    hbit = ((hmask[:, None, :] >> _BITS_8.reshape(1, 8, 1)) & np.uint8(1)).reshape(n, 2, 4, 32)
    q = low_q.view(np.int8) - ((hbit ^ np.uint8(1)) << np.uint8(2)).view(np.int8)
    np.multiply(dl, q.reshape(n, 16, 16), out=out.reshape(n, 16, 16), dtype=np.float32)


def _deq_q4_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    p = unpack_blocks("Q4_K", b)
    d1 = (p["d"] * p["sc"].astype(np.float32))[:, :, None]
    m1 = (p["dmin"] * p["mn"].astype(np.float32))[:, :, None]
    o = out.reshape(n, 8, 32)
    np.multiply(d1, p["q"], out=o, dtype=np.float32)
    np.subtract(o, m1, out=o)


def _deq_q5_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    d = _half(b, 0)
    dmin = _half(b, 2)
    sc, mn = _k_scales(b[:, 4:16])
    qh = b[:, 16:48]
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * mn.astype(np.float32))[:, :, None]
    high = ((qh[:, None, :] >> _BITS_8.reshape(1, 8, 1)) & np.uint8(1)) << np.uint8(4)
    o = out.reshape(n, 8, 32)
    np.multiply(d1, _k_low_nibbles(b[:, 48:176]) | high, out=o, dtype=np.float32)
    np.subtract(o, m1, out=o)


def _deq_q6_k(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    p = unpack_blocks("Q6_K", b)
    scale = p["d"] * p["sc"].astype(np.float32)
    np.multiply(scale[:, :, None], p["q"], out=out.reshape(n, 16, 16), dtype=np.float32)


def _deq_q8_k(b: np.ndarray, out: np.ndarray) -> None:
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4").astype(np.float32)
    np.multiply(d, b[:, 4:260].view(np.int8), out=out, dtype=np.float32)


def _deq_iq4_nl(b: np.ndarray, out: np.ndarray) -> None:
    d = _half(b, 0)
    np.multiply(d, _KVALUES_IQ4NL[_nibbles(b[:, 2:18])], out=out)


def _deq_iq4_xs(b: np.ndarray, out: np.ndarray) -> None:
    n = b.shape[0]
    d = _half(b, 0)
    scales_h = np.ascontiguousarray(b[:, 2:4]).view("<u2")  # (n, 1)
    scales_l = b[:, 4:8]
    shifts = np.arange(0, 16, 2, dtype=np.uint16).reshape(1, 8)
    high = ((scales_h >> shifts) & np.uint16(3)).astype(np.uint8)  # (n, 8)
    low = np.stack([scales_l & np.uint8(0x0F), scales_l >> np.uint8(4)], axis=2).reshape(n, 8)
    ls = (low | (high << np.uint8(4))).view(np.int8) - np.int8(32)
    dl = (d * ls.astype(np.float32))[:, :, None]
    qs = b[:, 8:136].reshape(n, 8, 1, 16)
    idx = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=2).reshape(n, 8, 32)
    np.multiply(dl, _KVALUES_IQ4NL[idx], out=out.reshape(n, 8, 32))


_DEQUANTIZERS: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
    "Q4_0": _deq_scaled("Q4_0"),
    "Q4_1": _deq_q4_1,
    "Q5_0": _deq_scaled("Q5_0"),
    "Q5_1": _deq_q5_1,
    "Q8_0": _deq_scaled("Q8_0"),
    "Q2_K": _deq_q2_k,
    "Q3_K": _deq_q3_k,
    "Q4_K": _deq_q4_k,
    "Q5_K": _deq_q5_k,
    "Q6_K": _deq_q6_k,
    "Q8_K": _deq_q8_k,
    "IQ4_NL": _deq_iq4_nl,
    "IQ4_XS": _deq_iq4_xs,
}

#: ggml type names :func:`dequantize` handles.
DEQUANTIZABLE_TYPES: tuple[str, ...] = tuple(_PLAIN) + tuple(_DEQUANTIZERS)


def dequantize(raw: np.ndarray, name: str, shape: tuple[int, ...], dtype: Any = np.float32,
               what: str = "weight") -> np.ndarray:
    """A new array of ``shape`` holding the values stored in ``raw`` (uint8 bytes of ggml
    type ``name``) as ``dtype``.

    ``dtype`` must be a numpy floating type (float16, float32, float64).  Values are computed
    in float32 as ggml does (F64 data keeps float64 precision when ``dtype`` is float64) and
    then cast.  Raises DTypeError for a non-float ``dtype`` and UnsupportedModelError for a
    ggml type without a dequantizer here (see :data:`DEQUANTIZABLE_TYPES`); ``what`` names the
    tensor in that message.
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"dequantize: {dtype!r} is not a numpy dtype") from None
    if out_dtype.kind != "f":
        raise DTypeError(f"dequantize: dtype must be a floating type, got {out_dtype}")
    if name in _PLAIN:
        values = raw.view(_PLAIN[name])
        if name == "BF16":
            values = (values.astype(np.uint32) << np.uint32(16)).view(np.float32)
        elif name == "F64" and out_dtype == np.float64:
            values = values.copy()
        else:
            values = values.astype(np.float32)  # always a copy: raw is never float32-typed
        with np.errstate(all="ignore"):
            return values.astype(out_dtype, copy=False).reshape(shape)
    fn = _DEQUANTIZERS.get(name)
    if fn is None:
        raise UnsupportedModelError(
            f"cannot dequantize {what}: ggml type {name} has no dequantizer (supported: "
            f"{', '.join(DEQUANTIZABLE_TYPES)})"
        )
    info = _BY_NAME[name]
    blocks = raw.reshape(-1, info.type_size)
    n_blocks = blocks.shape[0]
    out = np.empty((n_blocks, info.block_size), dtype=out_dtype)
    step = max(1, _CHUNK_VALUES // info.block_size)
    with np.errstate(all="ignore"):  # NaN/inf scales in the file propagate silently
        for start in range(0, n_blocks, step):
            stop = min(n_blocks, start + step)
            if out_dtype == np.float32:
                fn(blocks[start:stop], out[start:stop])
            else:
                tmp = np.empty((stop - start, info.block_size), dtype=np.float32)
                fn(blocks[start:stop], tmp)
                out[start:stop] = tmp
    return out.reshape(shape)

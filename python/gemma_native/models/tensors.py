"""Checkpoint tensors -> engine weights: per-architecture tables and the one mapper.

Each architecture describes its tensors as data, a :class:`TensorTable` of
:class:`TensorSpec` rows: the engine's name for the tensor, its name in the checkpoint, its
shape in terms of the config, and how its values reach the engine (a large matrix that keeps
its dtype or is converted / quantized as asked, a small vector widened to float32, or
RecurrentGemma's convolution taps, transposed).  :func:`map_tensors` applies a table to a
source of tensors -- a Hugging Face checkpoint (:class:`SafetensorsSource`) or a GGUF file
(:class:`GGUFSource`) -- and returns ``{engine name: (array, dtype code)}``, the weights the
core models take.  Every name, shape and dtype is checked; messages name the tensor and its
file, and tensors the table does not know are reported.
"""

from __future__ import annotations

import logging

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import numpy as np

from .._dtypes import DTYPE_CODES, INT8_FORMAT, canonical_dtype, convert_weight, to_engine
from ..errors import ModelFormatError, UnsupportedModelError
from ..loading.ggml import ggml_type

# How a tensor's values reach the engine.
MATRIX = "matrix"  # the file's dtype, or the dtype asked for at load (int8: Q8_0 blocks)
VECTOR = "vector"  # norms, biases, gates' parameters: float32
CONV_TAPS = "conv_taps"  # a Conv1d weight [C, 1, K] as float32 taps [K, C]
KINDS = (MATRIX, VECTOR, CONV_TAPS)

#: Prefix of the engine's per-layer tensor names.
ENGINE_LAYER = "layers.{i}."


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a table.

    ``shape`` lists dimensions: ints, or names of the table's dims (``"D"``), or products of
    them (``"H*hd"``).  In a table's ``layers`` the names are suffixes of the per-layer
    prefixes.  ``block``: only in layers whose block kind (the table's ``blocks``) is this;
    ``when``: only when this boolean config field is true (``"!field"``: false).  An
    ``optional`` tensor may be absent.  ``why`` replaces the source's "from config.json" in a
    shape mismatch message."""

    engine: str | None
    source: str
    shape: tuple
    kind: str = MATRIX
    block: str | None = None
    when: str | None = None
    optional: bool = False
    why: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown tensor kind {self.kind!r}")

    def shape_for(self, dims: Mapping[str, int]) -> tuple:
        def dim(d):
            if isinstance(d, int):
                return d
            n = 1
            for part in d.split("*"):
                n *= dims[part]
            return n

        return tuple(dim(d) for d in self.shape)

    def applies(self, cfg, block: str | None) -> bool:
        if self.block is not None and self.block != block:
            return False
        if self.when is not None:
            flag = bool(getattr(cfg, self.when.lstrip("!")))
            return flag != self.when.startswith("!")
        return True


def matrix(engine, source, *shape, **kw) -> TensorSpec:
    return TensorSpec(engine, source, shape, MATRIX, **kw)


def vector(engine, source, *shape, **kw) -> TensorSpec:
    return TensorSpec(engine, source, shape, VECTOR, **kw)


@dataclass(frozen=True)
class TensorTable:
    """All tensors of one architecture in one checkpoint format.

    ``dims(cfg)`` names the config's dimensions for the shapes; ``globals`` are the tensors
    outside the layers, ``layers`` those of every layer (names relative to ``layer_prefix``
    and :data:`ENGINE_LAYER`); ``blocks`` names the config field listing each layer's block
    kind (None: all layers alike); ``tied`` are tensors a file may hold as copies of a mapped
    one (shape-checked, not used); ``ignored`` are names skipped silently.  ``needed(cfg)``
    and ``describe(cfg)`` word the missing / unexpected tensor messages."""

    dims: Callable[[object], dict]
    globals: tuple
    layers: tuple
    layer_prefix: str
    describe: Callable[[object], str]
    needed: Callable[[object], str] | None = None
    blocks: str | None = None
    tied: tuple = ()
    ignored: tuple = ()

    def layer_specs(self, cfg, i: int) -> list:
        block = getattr(cfg, self.blocks)[i] if self.blocks else None
        return [s for s in self.layers if s.applies(cfg, block)]

    def expand(self, cfg) -> Iterator[tuple]:
        """(spec, source name, engine name, shape) of every tensor the config needs, in
        order: the globals, then layer by layer (tied tensors are not listed)."""
        dims = self.dims(cfg)
        for s in self.globals:
            if s.applies(cfg, None):
                yield s, s.source, s.engine, s.shape_for(dims)
        for i in range(cfg.num_layers):
            src, eng = self.layer_prefix.format(i=i), ENGINE_LAYER.format(i=i)
            for s in self.layer_specs(cfg, i):
                yield s, src + s.source, eng + s.engine, s.shape_for(dims)


# --------------------------------------------------------------------------------------
# Sources: where tensors come from, how their values become engine arrays, how problems
# are worded.
# --------------------------------------------------------------------------------------

_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")


class SafetensorsSource:
    """Tensors of a Hugging Face checkpoint: ``{name: loading.safetensors.Tensor}``."""

    def __init__(self, tensors: Mapping):
        self.tensors = tensors

    def get(self, name):
        return self.tensors.get(name)

    def take(self, name):
        """get(name) for the mapper, which reads each tensor once: a mapping that makes its
        tensors on demand (random models) then forgets it."""
        take = getattr(self.tensors, "take", None)
        return take(name) if take is not None else self.tensors.get(name)

    def names(self):
        return self.tensors.keys()

    @staticmethod
    def _where(t) -> str:
        return f"'{t.name}' in {t.file}"

    def missing(self, name: str, needed: str | None) -> ModelFormatError:
        return ModelFormatError(f"missing tensor '{name}'" + (f" ({needed})" if needed else ""))

    def bad_shape(self, t, shape: tuple, why: str | None) -> ModelFormatError:
        return ModelFormatError(f"tensor {self._where(t)} has shape {tuple(t.shape)}, expected "
                                f"{shape} {why or 'from config.json'}")

    def unexpected(self, names: list, what: str) -> ModelFormatError:
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        return ModelFormatError(f"unexpected tensor {self._where(self.tensors[names[0]])}"
                                f"{more} for a {what}")

    def convert(self, t, is_matrix: bool, want: str | None):
        if t.dtype not in _FLOAT_DTYPES:
            raise UnsupportedModelError(f"tensor {self._where(t)} has dtype {t.dtype}; "
                                        f"expected a float dtype")
        src = "float32" if t.dtype == "float64" else t.dtype
        arr = t.data if t.dtype != "float64" else np.ascontiguousarray(t.data, np.float32)
        if is_matrix:
            return to_engine(arr, src, want or src)
        return np.ascontiguousarray(convert_weight(arr, src, "float32")), DTYPE_CODES["float32"]


class GGUFSource:
    """Tensors of a parsed GGUF file (:class:`~gemma_native.loading.gguf.GGUFFile`).

    Matrices in a block format the kernels multiply natively stay in their blocks,
    memory-mapped (unless a float dtype is asked for; dtype "int8" keeps Q8_0 blocks);
    F32/F16/BF16 matrices keep their dtype unless another is asked for; everything else is
    dequantized to float32 (then converted as asked)."""

    def __init__(self, gf):
        self.gf = gf

    def get(self, name):
        return self.gf.tensors.get(name)

    take = get  # the mapper's read of each tensor

    def names(self):
        return self.gf.tensors.keys()

    def missing(self, name: str, needed: str | None) -> ModelFormatError:
        return ModelFormatError(f"{self.gf.path}: missing tensor '{name}'")

    def bad_shape(self, t, shape: tuple, why: str | None) -> ModelFormatError:
        return ModelFormatError(f"{self.gf.path}: tensor '{t.name}' has shape {tuple(t.shape)}, "
                                f"expected {shape} {why or 'from the metadata'}")

    def unexpected(self, names: list, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.gf.path}: unexpected tensor '{names[0]}' for a {what}")

    def convert(self, t, is_matrix: bool, want: str | None):
        info = ggml_type(t.ggml_type)
        if is_matrix and info.quant_code is not None and (
                want is None or (want == "int8" and t.ggml_type == INT8_FORMAT)):
            return np.asarray(t.raw).reshape(t.shape[0], -1), info.quant_code
        if is_matrix and info.float_dtype is not None:
            src = info.float_dtype
            if src == "bfloat16":
                arr = np.asarray(t.raw).view(np.uint16).reshape(t.shape)
            elif src == "float16":
                arr = np.asarray(t.raw).view(np.float16).reshape(t.shape)
            else:
                arr = t.dequantize(np.float32)
            return to_engine(arr, src, want or src)
        f = np.ascontiguousarray(t.dequantize(np.float32), dtype=np.float32)
        return to_engine(f, "float32", (want or "float32") if is_matrix else "float32")


# --------------------------------------------------------------------------------------
# The mapper
# --------------------------------------------------------------------------------------


log = logging.getLogger("gemma_native.load")


def map_tensors(table: TensorTable, cfg, source, dtype: str | None = None) -> dict:
    """Applies ``table`` to ``source`` for config ``cfg``: ``{engine name: (array, code)}``.

    dtype: None keeps each matrix's stored dtype (or block format); a float dtype converts
    matrices to it; "int8" quantizes them to Q8_0 blocks.  Raises ModelFormatError for a
    missing, misshapen or unexpected tensor, UnsupportedModelError for a dtype the engine
    cannot take."""
    want = canonical_dtype(dtype) if dtype is not None else None
    dims = table.dims(cfg)
    out, used = {}, set()

    def take(spec, name, engine_name):
        t = source.take(name)
        if t is None:
            if spec.optional:
                return
            raise source.missing(name, table.needed(cfg) if table.needed else None)
        used.add(name)
        shape = spec.shape_for(dims)
        if tuple(t.shape) != shape:
            raise source.bad_shape(t, shape, spec.why)
        arr, code = source.convert(t, spec.kind == MATRIX, want)
        if spec.kind == CONV_TAPS:  # [C, 1, K] -> [K, C]: tap K-1 meets the current token
            arr = np.ascontiguousarray(arr[:, 0, :].T)
        out[engine_name] = (arr, code)

    for spec in table.globals:
        if spec.applies(cfg, None):
            take(spec, spec.source, spec.engine)
    what = f"converting weights to {want}" if want is not None else "reading weights"
    for i in range(cfg.num_layers):
        prefix, eng = table.layer_prefix.format(i=i), ENGINE_LAYER.format(i=i)
        specs = table.layer_specs(cfg, i)
        if table.blocks:
            _check_block_kind(table, cfg, i, prefix, source)
        for spec in specs:
            take(spec, prefix + spec.source, eng + spec.engine)
        # progress for a front end (the CLI draws it on a terminal); silent by default
        log.info("%s: layer %d of %d", what, i + 1, cfg.num_layers,
                 extra={"progress": (i + 1, cfg.num_layers, what)})

    extra = sorted(set(source.names()) - used - set(table.ignored)
                   - {s.source for s in table.tied})
    if extra:
        raise source.unexpected(extra, table.describe(cfg))
    for spec in table.tied:
        t = source.get(spec.source)
        if t is not None and tuple(t.shape) != spec.shape_for(dims):
            raise source.bad_shape(t, spec.shape_for(dims), spec.why)
    return out


def _check_block_kind(table: TensorTable, cfg, i: int, prefix: str, source):
    """The config decides each layer's block kind; say so clearly if the file holds the
    other kind (its first kind-specific tensor is there, this kind's is not)."""
    kind = getattr(cfg, table.blocks)[i]
    first = {}
    for s in table.layers:
        if s.block is not None:
            first.setdefault(s.block, prefix + s.source)
    if kind in first and source.get(first[kind]) is None:
        for other_kind, other in first.items():
            if other_kind != kind and source.get(other) is not None:
                raise ModelFormatError(
                    f"layer {i} is '{kind}' by config.json {table.blocks} but the checkpoint "
                    f"holds the other kind of block ('{other}')")

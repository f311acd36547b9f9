"""The argument checks of the ops bindings: each bad input raises the matching GemmaNativeError
subclass, on every CPU kernel set, and never crashes; an unavailable kernel set is a
DeviceError."""

from __future__ import annotations

import numpy as np
import pytest

import gemma_native as gn
from gemma_native import ops
from gemma_native.errors import (
    DeviceError,
    DTypeError,
    GemmaNativeError,
    InvalidArgumentError,
    ShapeError,
)

from tests.helpers.opcheck import ALL_ISAS, AVAILABLE_ISAS


# ---------------------------------------------------------------------------------------------
# bad inputs: each raises the matching GemmaNativeError subclass, never crashes
# ---------------------------------------------------------------------------------------------

_F = np.float32
_x23 = lambda: np.ones((2, 3), _F)  # noqa: E731
_w43 = lambda: np.ones((4, 3), _F)  # noqa: E731
_cx = lambda: np.ones((2, 5, 3), _F)  # noqa: E731
_cpos = lambda: np.tile(np.arange(5, dtype=np.int32), (2, 1))  # noqa: E731
_cw = lambda: np.ones((4, 3), _F)  # noqa: E731
_q = lambda: np.ones((1, 3, 4, 8), _F)  # noqa: E731
_kv = lambda: np.ones((1, 3, 2, 8), _F)  # noqa: E731
_apos = lambda: np.arange(3, dtype=np.int32)[None]  # noqa: E731


def _readonly(a):
    a.setflags(write=False)
    return a


def _noncontig_state():
    return np.zeros((2, 3, 3), _F).transpose(0, 2, 1)  # shape ok (2, 3, 3), F-ordered


def _rglru(x_shape=(2, 5, 3), gx=None, a_len=3, pos=None, h=None):
    x = np.ones(x_shape, _F)
    return lambda: ops.rglru_scan(x, np.ones(gx or x_shape, _F), np.ones(x_shape, _F),
                                  np.zeros(a_len, _F),
                                  _cpos() if pos is None else pos,
                                  np.zeros((2, 3), _F) if h is None else h)


def _attn(q=None, k=None, v=None, pos=None, window=4, kc=None, vc=None, count=None,
          with_cache=False):
    def call():
        kk = _kv() if k is None else k
        if with_cache:
            kcc = np.zeros((1, 4, 2, 8), _F) if kc is None else kc
            vcc = np.zeros((1, 4, 2, 8), _F) if vc is None else vc
            cnt = np.array([2], np.int64) if count is None else count
        else:
            kcc, vcc, cnt = kc, vc, count
        return ops.attention(_q() if q is None else q, kk, kk.copy() if v is None else v,
                             _apos() if pos is None else pos, window, 1.0, 0.0, kcc, vcc, cnt)
    return call


BAD_INPUTS = {
    # embedding
    "emb table 1-D": (lambda: ops.embedding(np.ones(4, _F), np.array([0])), ShapeError),
    "emb ids 2-D": (lambda: ops.embedding(_w43(), np.zeros((1, 2), np.int32)), ShapeError),
    "emb id negative": (lambda: ops.embedding(_w43(), np.array([0, -1])), InvalidArgumentError),
    "emb id == V": (lambda: ops.embedding(_w43(), np.array([4])), InvalidArgumentError),
    "emb id way out": (lambda: ops.embedding(_w43(), np.array([2**31 - 1])),
                       InvalidArgumentError),
    "emb id beyond int32": (lambda: ops.embedding(_w43(), np.array([2**32 + 1], np.int64)),
                            InvalidArgumentError),
    "emb int table": (lambda: ops.embedding(np.ones((4, 3), np.int32), np.array([0])),
                      DTypeError),
    "emb float64 table": (lambda: ops.embedding(np.ones((4, 3)), np.array([0])), DTypeError),
    "emb float64 as bf16": (lambda: ops.embedding((np.ones((4, 3)), "bfloat16"), np.array([0])),
                            DTypeError),
    "emb float32 as bf16": (lambda: ops.embedding((_w43(), "bfloat16"), np.array([0])),
                            DTypeError),
    "emb uint16 as f32": (lambda: ops.embedding((np.ones((4, 3), np.uint16), "float32"),
                                                np.array([0])), DTypeError),
    "emb bare uint16": (lambda: ops.embedding(np.ones((4, 3), np.uint16), np.array([0])),
                        DTypeError),
    "emb unknown dtype": (lambda: ops.embedding((np.ones((4, 3), np.uint16), "int8"),
                                                np.array([0])), DTypeError),
    # rmsnorm
    "rms w length": (lambda: ops.rmsnorm(_x23(), np.ones(4, _F)), ShapeError),
    "rms w 2-D": (lambda: ops.rmsnorm(_x23(), np.ones((1, 3), _F)), ShapeError),
    "rms width 0": (lambda: ops.rmsnorm(np.ones((2, 0), _F), np.ones(0, _F)), ShapeError),
    # linear
    "lin K mismatch": (lambda: ops.linear(np.ones((2, 4), _F), _w43()), ShapeError),
    "lin bias length": (lambda: ops.linear(_x23(), _w43(), np.ones(3, _F)), ShapeError),
    "lin bias 2-D": (lambda: ops.linear(_x23(), _w43(), np.ones((1, 4), _F)), ShapeError),
    "lin x 3-D": (lambda: ops.linear(np.ones((1, 2, 3), _F), _w43()), ShapeError),
    "lin x 1-D": (lambda: ops.linear(np.ones(3, _F), _w43()), ShapeError),
    "lin w 1-D": (lambda: ops.linear(_x23(), np.ones(3, _F)), ShapeError),
    "lin w 3-D": (lambda: ops.linear(_x23(), np.ones((1, 4, 3), _F)), ShapeError),
    "lin int weights": (lambda: ops.linear(_x23(), np.ones((4, 3), np.int64)), DTypeError),
    "lin float64 weights": (lambda: ops.linear(_x23(), np.ones((4, 3))), DTypeError),
    "lin float64 as bf16": (lambda: ops.linear(_x23(), (np.ones((4, 3)), "bfloat16")),
                            DTypeError),
    "lin uint16 as f32": (lambda: ops.linear(_x23(), (np.ones((4, 3), np.uint16), "float32")),
                          DTypeError),
    "lin f32 as f16": (lambda: ops.linear(_x23(), (_w43(), "float16")), DTypeError),
    "lin bad tuple": (lambda: ops.linear(_x23(), (_w43(), "float32", 1)), DTypeError),
    # block_diag_linear
    "bdl w not square": (lambda: ops.block_diag_linear(np.ones((2, 6), _F),
                                                       np.ones((2, 3, 4), _F)), ShapeError),
    "bdl x width": (lambda: ops.block_diag_linear(np.ones((2, 5), _F), np.ones((2, 3, 3), _F)),
                    ShapeError),
    "bdl b shape": (lambda: ops.block_diag_linear(np.ones((2, 6), _F), np.ones((2, 3, 3), _F),
                                                  np.ones(6, _F)), ShapeError),
    "bdl b wrong blocks": (lambda: ops.block_diag_linear(np.ones((2, 6), _F),
                                                         np.ones((2, 3, 3), _F),
                                                         np.ones((3, 3), _F)), ShapeError),
    "bdl w 2-D": (lambda: ops.block_diag_linear(np.ones((2, 3), _F), np.ones((3, 3), _F)),
                  ShapeError),
    "bdl zero blocks": (lambda: ops.block_diag_linear(np.ones((2, 0), _F),
                                                      np.ones((0, 3, 3), _F)), ShapeError),
    "bdl int weights": (lambda: ops.block_diag_linear(np.ones((2, 6), _F),
                                                      np.ones((2, 3, 3), np.int16)), DTypeError),
    # conv1d
    "conv x 2-D": (lambda: ops.conv1d(np.ones((5, 3), _F), _cpos(), _cw()), ShapeError),
    "conv w 1-D": (lambda: ops.conv1d(_cx(), _cpos(), np.ones(3, _F)), ShapeError),
    "conv w channels": (lambda: ops.conv1d(_cx(), _cpos(), np.ones((4, 2), _F)), ShapeError),
    "conv w no taps": (lambda: ops.conv1d(_cx(), _cpos(), np.ones((0, 3), _F)), ShapeError),
    "conv pos shape": (lambda: ops.conv1d(_cx(), np.zeros((2, 4), np.int32), _cw()), ShapeError),
    "conv pos 1-D": (lambda: ops.conv1d(_cx(), np.arange(5), _cw()), ShapeError),
    "conv bias length": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), np.ones(4, _F)), ShapeError),
    "conv state taps": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                           np.zeros((2, 4, 3), _F)), ShapeError),
    "conv state batch": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                            np.zeros((1, 3, 3), _F)), ShapeError),
    "conv state channels": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                               np.zeros((2, 3, 4), _F)), ShapeError),
    "conv state 2-D": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None, np.zeros((2, 9), _F)),
                       ShapeError),
    "conv state float64": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                              np.zeros((2, 3, 3))), DTypeError),
    "conv state float16": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                              np.zeros((2, 3, 3), np.float16)), DTypeError),
    "conv state non-contiguous": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                                     _noncontig_state()), ShapeError),
    "conv state read-only": (lambda: ops.conv1d(_cx(), _cpos(), _cw(), None,
                                                _readonly(np.zeros((2, 3, 3), _F))),
                             InvalidArgumentError),
    # rglru_scan
    "lru x 2-D": (_rglru(x_shape=(5, 3), gx=(5, 3), pos=_cpos()), ShapeError),
    "lru gate shape": (_rglru(gx=(2, 5, 4)), ShapeError),
    "lru a_param length": (_rglru(a_len=4), ShapeError),
    "lru pos shape": (_rglru(pos=np.zeros((2, 4), np.int32)), ShapeError),
    "lru h shape": (_rglru(h=np.zeros((2, 4), _F)), ShapeError),
    "lru h 3-D": (_rglru(h=np.zeros((2, 1, 3), _F)), ShapeError),
    "lru h float64": (_rglru(h=np.zeros((2, 3))), DTypeError),
    "lru h non-contiguous": (_rglru(h=np.zeros((3, 2), _F).T), ShapeError),
    "lru h strided": (_rglru(h=np.zeros((2, 6), _F)[:, ::2]), ShapeError),
    "lru h read-only": (_rglru(h=_readonly(np.zeros((2, 3), _F))), InvalidArgumentError),
    # rope
    "rope x 2-D": (lambda: ops.rope(np.ones((2, 8), _F), np.arange(2), 8), ShapeError),
    "rope pos length": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(3), 8), ShapeError),
    "rope pos 2-D": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.zeros((2, 1)), 8), ShapeError),
    "rope odd rot_dims": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 3), ShapeError),
    "rope rot_dims > hd": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 10),
                           ShapeError),
    "rope negative rot_dims": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), -2),
                               ShapeError),
    "rope base 0": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 8, 0.0),
                    InvalidArgumentError),
    "rope base negative": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 8, -1.0),
                           InvalidArgumentError),
    "rope base NaN": (lambda: ops.rope(np.ones((2, 1, 8), _F), np.arange(2), 8, np.nan),
                      InvalidArgumentError),
    # attention
    "attn k/v mismatch": (_attn(v=np.ones((1, 3, 1, 8), _F)), ShapeError),
    "attn k/v head_dim": (_attn(v=np.ones((1, 3, 2, 7), _F)), ShapeError),
    "attn q/k head_dim": (_attn(k=np.ones((1, 3, 2, 9), _F)), ShapeError),
    "attn q/k time": (_attn(k=np.ones((1, 2, 2, 8), _F)), ShapeError),
    "attn q/k batch": (_attn(k=np.ones((2, 3, 2, 8), _F)), ShapeError),
    "attn heads % kv_heads": (_attn(k=np.ones((1, 3, 3, 8), _F)), ShapeError),
    "attn zero kv_heads": (_attn(k=np.ones((1, 3, 0, 8), _F)), ShapeError),
    "attn q 3-D": (_attn(q=np.ones((3, 4, 8), _F)), ShapeError),
    "attn pos shape": (_attn(pos=np.arange(4, dtype=np.int32)[None]), ShapeError),
    "attn negative window": (_attn(window=-1), InvalidArgumentError),
    "attn cache without count": (_attn(kc=np.zeros((1, 4, 2, 8), _F),
                                       vc=np.zeros((1, 4, 2, 8), _F)), InvalidArgumentError),
    "attn count without cache": (_attn(count=np.array([0])), InvalidArgumentError),
    "attn k_cache only": (_attn(kc=np.zeros((1, 4, 2, 8), _F), count=np.array([0])),
                          InvalidArgumentError),
    "attn cache kv_heads": (_attn(with_cache=True, kc=np.zeros((1, 4, 1, 8), _F),
                                  vc=np.zeros((1, 4, 1, 8), _F)), ShapeError),
    "attn cache head_dim": (_attn(with_cache=True, kc=np.zeros((1, 4, 2, 7), _F),
                                  vc=np.zeros((1, 4, 2, 7), _F)), ShapeError),
    "attn cache batch": (_attn(with_cache=True, kc=np.zeros((2, 4, 2, 8), _F),
                               vc=np.zeros((2, 4, 2, 8), _F)), ShapeError),
    "attn k/v cache mismatch": (_attn(with_cache=True, vc=np.zeros((1, 5, 2, 8), _F)),
                                ShapeError),
    "attn cache 3-D": (_attn(with_cache=True, kc=np.zeros((1, 4, 16), _F),
                             vc=np.zeros((1, 4, 16), _F)), ShapeError),
    "attn cache float64": (_attn(with_cache=True, kc=np.zeros((1, 4, 2, 8)),
                                 vc=np.zeros((1, 4, 2, 8))), DTypeError),
    "attn cache non-contiguous": (_attn(with_cache=True,
                                        kc=np.zeros((1, 2, 4, 8), _F).transpose(0, 2, 1, 3)),
                                  ShapeError),
    "attn cache read-only": (_attn(with_cache=True, vc=_readonly(np.zeros((1, 4, 2, 8), _F))),
                             InvalidArgumentError),
    "attn zero slots": (_attn(with_cache=True, kc=np.zeros((1, 0, 2, 8), _F),
                              vc=np.zeros((1, 0, 2, 8), _F), count=np.array([0])),
                        InvalidArgumentError),
    "attn count length": (_attn(with_cache=True, count=np.array([0, 0])), ShapeError),
    "attn count 2-D": (_attn(with_cache=True, count=np.array([[0]])), ShapeError),
    "attn negative count": (_attn(with_cache=True, count=np.array([-1])), InvalidArgumentError),
    "attn cache too small": (_attn(with_cache=True, window=6, count=np.array([5])),
                             InvalidArgumentError),
    # geglu / softcap
    "geglu shapes": (lambda: ops.geglu(np.ones(4, _F), np.ones(5, _F)), ShapeError),
    "geglu shapes 2-D": (lambda: ops.geglu(np.ones((2, 3), _F), np.ones((3, 2), _F)),
                         ShapeError),
    "softcap zero": (lambda: ops.softcap(np.ones(4, _F), 0.0), InvalidArgumentError),
    "softcap negative": (lambda: ops.softcap(np.ones(4, _F), -1.0), InvalidArgumentError),
    "softcap NaN": (lambda: ops.softcap(np.ones(4, _F), np.nan), InvalidArgumentError),
    "add shapes": (lambda: ops.add(np.ones(4, _F), np.ones(5, _F)), ShapeError),
    "add shapes 2-D": (lambda: ops.add(np.ones((2, 3), _F), np.ones((3, 2), _F)), ShapeError),
    # sample
    "sample logits 1-D": (lambda: ops.sample(np.ones(5, _F), 1.0, 0, 1.0, 0, 0), ShapeError),
    "sample logits 3-D": (lambda: ops.sample(np.ones((1, 1, 5), _F), 1.0, 0, 1.0, 0, 0),
                          ShapeError),
    "sample empty vocab": (lambda: ops.sample(np.ones((2, 0), _F), [1.0, 1.0], [0, 0],
                                              [1.0, 1.0], [0, 0], [0, 0]), ShapeError),
    "sample param length": (lambda: ops.sample(np.ones((2, 5), _F), [1.0, 1.0, 1.0], [0, 0],
                                               [1.0, 1.0], [0, 0], [0, 0]), ShapeError),
    "sample param 2-D": (lambda: ops.sample(np.ones((2, 5), _F), [1.0, 1.0], np.zeros((2, 1)),
                                            [1.0, 1.0], [0, 0], [0, 0]), ShapeError),
    "sample temperature < 0": (lambda: ops.sample(np.ones((1, 5), _F), -1.0, 0, 1.0, 0, 0),
                               InvalidArgumentError),
    "sample temperature NaN": (lambda: ops.sample(np.ones((1, 5), _F), np.nan, 0, 1.0, 0, 0),
                               InvalidArgumentError),
    "sample top_p 0": (lambda: ops.sample(np.ones((1, 5), _F), 1.0, 0, 0.0, 0, 0),
                       InvalidArgumentError),
    "sample top_p > 1": (lambda: ops.sample(np.ones((1, 5), _F), 1.0, 0, 1.01, 0, 0),
                         InvalidArgumentError),
    "sample top_k < 0": (lambda: ops.sample(np.ones((1, 5), _F), 1.0, -3, 1.0, 0, 0),
                         InvalidArgumentError),
    "sample greedy top_k < 0": (lambda: ops.sample(np.ones((1, 5), _F), 0.0, -1, 1.0, 0, 0),
                                InvalidArgumentError),
    # kernel sets
    "isa unknown": (lambda: gn.set_cpu_isa("sse9"), DeviceError),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_inputs_raise(isa, case):
    fn, expected = BAD_INPUTS[case]
    with pytest.raises(GemmaNativeError) as info:
        fn()
    assert isinstance(info.value, expected), (
        f"{case}: raised {type(info.value).__name__} ({info.value}), "
        f"expected {expected.__name__}")


def test_unavailable_isa_raises_device_error():
    missing = [name for name in ALL_ISAS if name not in AVAILABLE_ISAS]
    if not missing:
        pytest.skip("every compiled CPU kernel set runs on this CPU")
    for name in missing:
        with pytest.raises(DeviceError):
            gn.set_cpu_isa(name)
    assert gn.backend_info()["cpu_isa"] in AVAILABLE_ISAS

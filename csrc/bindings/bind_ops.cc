// gemma_native._core op functions over numpy arrays (exposed to users as gemma_native.ops).
// Inputs are checked for dtype, contiguity and every shape relation the kernel relies on, so
// no call can read or write out of bounds; outputs are new arrays.
// Each op binding is a template over the device it runs on (Dev): the CPU ones are
// _core.<op>, the CUDA kernels on the SIMT emulator _core.cuda_emu.<op>, on a GPU
// _core.cuda.<op> (only the ops of ops/op_list.h with CUDA kernels).  Arrays reach the device through a Stage:
// used in place on host-memory backends, copied in and out on a GPU.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // std::optional<py::array> arguments

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/devices.h"
#include "ops/cuda/ops_cuda.h"
#include "gemma_native/quant.h"
#include "ops/backend.h"
#include "ops/op_list.h"
#include "ops/ops.h"

namespace gemma_native::bindings {

namespace {

enum class Dev { kCpu, kEmu, kCuda };

ops::Backend& backend_of(Dev d) {
  return backend_for(d == Dev::kCpu ? "cpu" : d == Dev::kEmu ? "cuda-emu" : "cuda");
}

// One op call's arrays on a backend: host-memory backends use the numpy memory in place; a
// device backend gets copies of the inputs, and the outputs are copied back by finish().
class Stage {
 public:
  explicit Stage(Dev d) : be_(backend_of(d)) {}
  ops::Backend& backend() { return be_; }

  template <class T>
  const T* in(const T* host, size_t count) {
    return static_cast<const T*>(in_bytes(host, count * sizeof(T)));
  }
  const void* in_bytes(const void* host, size_t bytes) {
    if (be_.host_memory() || host == nullptr) return host;
    bufs_.emplace_back(be_, static_cast<int64_t>(bytes));
    be_.to_device(bufs_.back().data(), host, bytes);
    return bufs_.back().data();
  }
  template <class T>
  T* out(T* host, size_t count, bool copy_in = false) {
    if (be_.host_memory() || host == nullptr) return host;
    const size_t bytes = count * sizeof(T);
    bufs_.emplace_back(be_, static_cast<int64_t>(bytes));
    void* d = bufs_.back().data();
    if (copy_in) be_.to_device(d, host, bytes);
    back_.push_back({host, d, bytes});
    return static_cast<T*>(d);
  }
  void finish() {
    for (const Back& b : back_) be_.to_host(b.host, b.dev, b.bytes);
    be_.synchronize();
  }

 private:
  struct Back {
    void* host;
    const void* dev;
    size_t bytes;
  };
  ops::Backend& be_;
  std::vector<ops::Buffer<unsigned char>> bufs_;
  std::vector<Back> back_;
};

size_t nbytes(const py::array& a) { return static_cast<size_t>(a.nbytes()); }

using OptArray = std::optional<py::array>;

py::array_t<float> new_f32(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return py::array_t<float>(s);
}

ops::WeightMatrix weight_matrix(Stage& st, py::array& w, int dtype_code, const char* name) {
  check_ndim(w, 2, name);
  ops::WeightMatrix m;
  m.dtype = dtype_from_code(dtype_code);
  m.data = st.in_bytes(weight_ptr(w, m.dtype, name), nbytes(w));
  m.rows = w.shape(0);
  m.cols = weight_shape(w, m.dtype)[1];
  return m;
}

const float* opt_vec(Stage& st, OptArray& a, int64_t len, const char* name) {
  if (!a) return nullptr;
  check_ndim(*a, 1, name);
  check_dim(*a, 0, len, name);
  return st.in(typed<float>(*a, name), len);
}

template <Dev D>
py::array embedding(py::array table, int dtype_code, py::array ids, float scale) {
  Stage st(D);
  ops::EmbeddingArgs a;
  a.table = weight_matrix(st, table, dtype_code, "table");
  check_ndim(ids, 1, "ids");
  a.host_ids = typed<int32_t>(ids, "ids");
  a.n = ids.shape(0);
  a.ids = st.in(a.host_ids, a.n);
  a.scale = scale;
  auto out = new_f32({a.n, a.table.cols});
  a.out = st.out(out.mutable_data(), out.size());
  py::gil_scoped_release nogil;
  st.backend().embedding(a);
  st.finish();
  return out;
}

template <Dev D>
py::array rmsnorm(py::array x, py::array w, float eps, float offset) {
  check_ndim(x, 2, "x");
  check_ndim(w, 1, "w");
  check_dim(w, 0, x.shape(1), "w");
  Stage st(D);
  ops::RmsNormArgs a;
  a.x = st.in(typed<float>(x, "x"), x.size());
  a.w = st.in(typed<float>(w, "w"), w.size());
  a.n = x.shape(0);
  a.d = x.shape(1);
  a.eps = eps;
  a.offset = offset;
  auto out = new_f32(shape_of(x));
  a.out = st.out(out.mutable_data(), out.size());
  py::gil_scoped_release nogil;
  st.backend().rmsnorm(a);
  st.finish();
  return out;
}

template <Dev D>
py::array linear(py::array x, py::array w, int dtype_code, OptArray bias, bool float_activations,
                 bool bf16_activations) {
  Stage st(D);
  ops::LinearArgs a;
  a.w = weight_matrix(st, w, dtype_code, "w");
  a.w.float_activations = float_activations;
  a.w.bf16_activations = bf16_activations;
  check_ndim(x, 2, "x");
  check_dim(x, 1, a.w.cols, "x");
  a.x = st.in(typed<float>(x, "x"), x.size());
  a.n = x.shape(0);
  a.bias = opt_vec(st, bias, a.w.rows, "bias");
  auto y = new_f32({a.n, a.w.rows});
  a.y = st.out(y.mutable_data(), y.size());
  py::gil_scoped_release nogil;
  st.backend().linear(a);
  st.finish();
  return y;
}

// Float32 [rows, cols] -> Q8_0 blocks, uint8 [rows, cols / 32 * 34] (dtype="int8" at load).
py::array quantize_q8_0(py::array x) {
  check_ndim(x, 2, "x");
  const int64_t rows = x.shape(0), cols = x.shape(1);
  GN_CHECK(cols % 32 == 0, ErrorKind::kShape,
           "quantize_q8_0: the row length must be a multiple of 32, got " + std::to_string(cols));
  const float* src = typed<float>(x, "x");
  py::array_t<uint8_t> out({rows, cols / 32 * static_cast<int64_t>(sizeof(BlockQ8_0))});
  auto* dst = reinterpret_cast<BlockQ8_0*>(out.mutable_data());
  py::gil_scoped_release nogil;
  for (int64_t r = 0; r < rows; ++r) quantize_row_q8_0(src + r * cols, cols, dst + r * (cols / 32));
  return out;
}

// Where a pack_* writes the packed values of w [rows, cols]: w itself (in_place), `out` (an array
// of w's shape and dtype, writable and C-contiguous, not overlapping w unless it is w: the
// loader packs a memory-mapped matrix a chunk of rows at a time into its new array) or a new
// array.  Each group of rows is copied aside before it is written, so w may be the target.
template <class T>
py::array pack_target(py::array& w, bool in_place, const py::object& out, const char* what) {
  GN_CHECK(!in_place || out.is_none(), ErrorKind::kInvalidArgument,
           std::string(what) + ": in_place and out cannot be given together");
  if (in_place) return w;
  if (out.is_none()) return py::array(py::array_t<T>({w.shape(0), w.shape(1)}));
  GN_CHECK(py::isinstance<py::array>(out), ErrorKind::kDType,
           std::string(what) + ": out must be a numpy array");
  py::array o = py::reinterpret_borrow<py::array>(out);
  GN_CHECK(o.ndim() == 2 && o.shape(0) == w.shape(0) && o.shape(1) == w.shape(1),
           ErrorKind::kShape, std::string(what) + ": out must have the input's shape");
  typed<T>(o, "out", true);
  return o;
}

// Q8_0 blocks uint8 [rows, row_bytes] (rows % 16 == 0) -> the same values in the Q8_0R16
// layout (quant.h), same shape.  A group of 16 rows occupies the same bytes in both layouts,
// so it can be written over the input (in_place) or into the rows of another array (out).
py::array pack_q8_0r16(py::array blocks, bool in_place, const py::object& out) {
  check_ndim(blocks, 2, "blocks");
  const int64_t rows = blocks.shape(0), row_bytes = blocks.shape(1);
  GN_CHECK(rows % kQ8R16Rows == 0 && row_bytes % 34 == 0, ErrorKind::kShape,
           "pack_q8_0r16: needs rows % 16 == 0 and whole 34-byte blocks, got [" +
               std::to_string(rows) + ", " + std::to_string(row_bytes) + "]");
  uint8_t* src = typed<uint8_t>(blocks, "blocks", in_place);
  py::array target = pack_target<uint8_t>(blocks, in_place, out, "pack_q8_0r16");
  uint8_t* dst = static_cast<uint8_t*>(target.mutable_data());
  const int64_t nb = row_bytes / 34;
  py::gil_scoped_release nogil;
  std::vector<uint8_t> group(static_cast<size_t>(kQ8R16Rows * row_bytes));
  for (int64_t g = 0; g < rows / kQ8R16Rows; ++g) {
    std::memcpy(group.data(), src + g * kQ8R16Rows * row_bytes, group.size());
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* o = dst + (g * nb + b) * kQ8R16GroupBlock;
      const uint8_t* in[kQ8R16Rows];
      for (int r = 0; r < kQ8R16Rows; ++r) {
        in[r] = group.data() + r * row_bytes + b * 34;
        o[2 * r] = in[r][0];
        o[2 * r + 1] = in[r][1];
      }
      for (int j = 0; j < 8; ++j) {  // 4 values of each row, XOR 0x80 each byte (q + 128)
        for (int r = 0; r < kQ8R16Rows; ++r) {
          uint32_t v;
          std::memcpy(&v, in[r] + 2 + 4 * j, 4);
          v ^= 0x80808080u;
          std::memcpy(o + 2 * kQ8R16Rows + 64 * j + 4 * r, &v, 4);
        }
      }
    }
  }
  return target;
}

// bfloat16 bits uint16 [rows, cols] (rows % 32 == 0, cols % 16 == 0) -> the same values in the
// BF16R32 layout (dtype.h), same shape.  A panel of 32 rows occupies the same bytes in both
// layouts, so each panel is copied aside (L2-sized) and its words written over the input when
// in_place (no new memory: the page faults of a fresh copy cost a load of the 2B model ~9 s on
// the development VM), else into `out` or a new array (pack_target).
py::array pack_bf16r32(py::array w, bool in_place, const py::object& out) {
  check_ndim(w, 2, "w");
  const int64_t rows = w.shape(0), cols = w.shape(1);
  GN_CHECK(rows % kR32Rows == 0 && cols % kR32ColStep == 0, ErrorKind::kShape,
           "pack_bf16r32: needs rows % 32 == 0 and cols % 16 == 0, got [" +
               std::to_string(rows) + ", " + std::to_string(cols) + "]");
  uint16_t* src = typed<uint16_t>(w, "w", in_place);
  py::array target = pack_target<uint16_t>(w, in_place, out, "pack_bf16r32");
  uint32_t* dst = reinterpret_cast<uint32_t*>(target.mutable_data());
  py::gil_scoped_release nogil;
  std::vector<uint16_t> panel(static_cast<size_t>(kR32Rows * cols));
  for (int64_t q = 0; q < rows / kR32Rows; ++q) {
    std::memcpy(panel.data(), src + q * kR32Rows * cols, panel.size() * sizeof(uint16_t));
    for (int64_t l = 0; l < 8; ++l) {
      for (int64_t p = 0; p < cols / kR32ColStep; ++p) {
        for (int64_t t = 0; t < kR32Rows; ++t) {
          const uint16_t* v = panel.data() + t * cols + p * kR32ColStep + l;
          *dst++ = static_cast<uint32_t>(v[0]) | static_cast<uint32_t>(v[8]) << 16;
        }
      }
    }
  }
  return target;
}

// The quantized linear's 8-bit activations of x [rows, k] on the active CPU ISA: (d float32
// [rows, k / block], q int8 [rows, k / block, block], bsums int16 [rows, k / 256, 16] for block
// 256, else None), the layout of reference.quantize_activations.
// Every row of x [rows, k] quantized into Block-typed activation blocks; d and q get each block's
// scale and values, and more(r, i, block) sees the block too (q8_K's bsums).
template <class Block, class More>
void quantize_rows(const float* x, int64_t rows, int64_t k, int block, py::array_t<float>& d,
                   py::array_t<int8_t>& q, More more) {
  const int64_t nb = k / block;
  std::vector<Block> blocks(static_cast<size_t>(nb));
  for (int64_t r = 0; r < rows; ++r) {
    ops::quantize_activations(x + r * k, k, block, blocks.data());
    for (int64_t i = 0; i < nb; ++i) {
      d.mutable_at(r, i) = blocks[i].d;
      std::memcpy(q.mutable_data(r, i, 0), blocks[i].qs, sizeof(blocks[i].qs));
      more(r, i, blocks[i]);
    }
  }
}

py::tuple quantize_activations(py::array x, int block) {
  check_ndim(x, 2, "x");
  const int64_t rows = x.shape(0), k = x.shape(1);
  GN_CHECK(block == 32 || block == 256, ErrorKind::kInvalidArgument,
           "quantize_activations: block must be 32 or 256, got " + std::to_string(block));
  GN_CHECK(k % block == 0, ErrorKind::kShape,
           "quantize_activations: the row length must be a multiple of " + std::to_string(block) +
               ", got " + std::to_string(k));
  const float* src = typed<float>(x, "x");
  const int64_t nb = k / block;
  py::array_t<float> d({rows, nb});
  py::array_t<int8_t> q({rows, nb, static_cast<int64_t>(block)});
  if (block == 32) {
    quantize_rows<ActBlock32>(src, rows, k, block, d, q, [](int64_t, int64_t, const ActBlock32&) {});
    return py::make_tuple(d, q, py::none());
  }
  py::array_t<int16_t> bsums({rows, nb, static_cast<int64_t>(16)});
  quantize_rows<ActBlock256>(src, rows, k, block, d, q,
                             [&](int64_t r, int64_t i, const ActBlock256& b) {
                               std::memcpy(bsums.mutable_data(r, i, 0), b.bsums, sizeof(b.bsums));
                             });
  return py::make_tuple(d, q, bsums);
}

template <Dev D>
py::array block_diag_linear(py::array x, py::array w, int dtype_code, OptArray b,
                            bool bf16_activations) {
  check_ndim(w, 3, "w");
  GN_CHECK(w.shape(1) == w.shape(2), ErrorKind::kShape, "w must be [blocks, bs, bs]");
  check_ndim(x, 2, "x");
  Stage st(D);
  ops::BlockDiagLinearArgs a;
  a.blocks = w.shape(0);
  a.block_size = w.shape(1);
  check_dim(x, 1, a.blocks * a.block_size, "x");
  a.x = st.in(typed<float>(x, "x"), x.size());
  a.n = x.shape(0);
  a.w_dtype = dtype_from_code(dtype_code);
  a.w = st.in_bytes(weight_ptr(w, a.w_dtype, "w"), nbytes(w));
  a.bf16_activations = bf16_activations;
  if (b) {
    check_ndim(*b, 2, "b");
    check_dim(*b, 0, a.blocks, "b");
    check_dim(*b, 1, a.block_size, "b");
    a.b = st.in(typed<float>(*b, "b"), b->size());
  }
  auto y = new_f32(shape_of(x));
  a.y = st.out(y.mutable_data(), y.size());
  py::gil_scoped_release nogil;
  st.backend().block_diag_linear(a);
  st.finish();
  return y;
}

template <Dev D>
py::array conv1d(py::array x, py::array pos, py::array w, OptArray bias, OptArray state) {
  check_ndim(x, 3, "x");
  check_ndim(w, 2, "w");
  Stage st(D);
  ops::Conv1dArgs a;
  a.batch = x.shape(0);
  a.time = x.shape(1);
  a.channels = x.shape(2);
  a.width = w.shape(0);
  GN_CHECK(a.width >= 1, ErrorKind::kShape, "w must have at least one tap");
  check_dim(w, 1, a.channels, "w");
  check_ndim(pos, 2, "pos");
  check_dim(pos, 0, a.batch, "pos");
  check_dim(pos, 1, a.time, "pos");
  a.x = st.in(typed<float>(x, "x"), x.size());
  a.pos = st.in(typed<int32_t>(pos, "pos"), pos.size());
  a.w = st.in(typed<float>(w, "w"), w.size());
  a.bias = opt_vec(st, bias, a.channels, "bias");
  if (state) {
    check_ndim(*state, 3, "state");
    check_dim(*state, 0, a.batch, "state");
    check_dim(*state, 1, a.width - 1, "state");
    check_dim(*state, 2, a.channels, "state");
    a.state = st.out(typed<float>(*state, "state", true), state->size(), true);
  }
  auto y = new_f32(shape_of(x));
  a.y = st.out(y.mutable_data(), y.size());
  py::gil_scoped_release nogil;
  st.backend().conv1d(a);
  st.finish();
  return y;
}

template <Dev D>
py::array rglru_scan(py::array x, py::array gate_x, py::array gate_a, py::array a_param,
                     py::array pos, py::array h) {
  check_ndim(x, 3, "x");
  const auto s = shape_of(x);
  GN_CHECK(shape_of(gate_x) == s && shape_of(gate_a) == s, ErrorKind::kShape,
           "gate_x and gate_a must have the shape of x " + shape_text(s));
  check_ndim(a_param, 1, "a_param");
  check_dim(a_param, 0, s[2], "a_param");
  check_ndim(pos, 2, "pos");
  check_dim(pos, 0, s[0], "pos");
  check_dim(pos, 1, s[1], "pos");
  check_ndim(h, 2, "h");
  check_dim(h, 0, s[0], "h");
  check_dim(h, 1, s[2], "h");
  Stage st(D);
  ops::RgLruArgs a;
  a.x = st.in(typed<float>(x, "x"), x.size());
  a.gate_x = st.in(typed<float>(gate_x, "gate_x"), gate_x.size());
  a.gate_a = st.in(typed<float>(gate_a, "gate_a"), gate_a.size());
  a.a_param = st.in(typed<float>(a_param, "a_param"), a_param.size());
  a.pos = st.in(typed<int32_t>(pos, "pos"), pos.size());
  a.h = st.out(typed<float>(h, "h", true), h.size(), true);
  a.batch = s[0];
  a.time = s[1];
  a.channels = s[2];
  auto y = new_f32(s);
  a.y = st.out(y.mutable_data(), y.size());
  py::gil_scoped_release nogil;
  st.backend().rglru_scan(a);
  st.finish();
  return y;
}

template <Dev D>
py::array rope(py::array x, py::array pos, int64_t rot_dims, float base, float linear_factor) {
  check_ndim(x, 3, "x");
  check_ndim(pos, 1, "pos");
  check_dim(pos, 0, x.shape(0), "pos");
  const float* src = typed<float>(x, "x");
  auto out = new_f32(shape_of(x));
  std::copy(src, src + x.size(), out.mutable_data());
  Stage st(D);
  ops::RopeArgs a;
  a.x = st.out(out.mutable_data(), out.size(), true);
  a.pos = st.in(typed<int32_t>(pos, "pos"), pos.size());
  a.n = x.shape(0);
  a.heads = x.shape(1);
  a.head_dim = x.shape(2);
  a.rot_dims = rot_dims;
  a.base = base;
  a.linear_factor = linear_factor;
  py::gil_scoped_release nogil;
  st.backend().rope(a);
  st.finish();
  return out;
}

template <Dev D>
py::array attention(py::array q, py::array k, py::array v, py::array pos, int64_t window,
                    float scale, float softcap, OptArray k_cache, OptArray v_cache,
                    OptArray count) {
  check_ndim(q, 4, "q");
  check_ndim(k, 4, "k");
  Stage st(D);
  ops::AttentionArgs a;
  a.batch = q.shape(0);
  a.time = q.shape(1);
  a.heads = q.shape(2);
  a.head_dim = q.shape(3);
  a.kv_heads = k.shape(2);
  check_dim(k, 0, a.batch, "k");
  check_dim(k, 1, a.time, "k");
  check_dim(k, 3, a.head_dim, "k");
  GN_CHECK(shape_of(v) == shape_of(k), ErrorKind::kShape, "v must have the shape of k");
  check_ndim(pos, 2, "pos");
  check_dim(pos, 0, a.batch, "pos");
  check_dim(pos, 1, a.time, "pos");
  a.q = st.in(typed<float>(q, "q"), q.size());
  a.k = st.in(typed<float>(k, "k"), k.size());
  a.v = st.in(typed<float>(v, "v"), v.size());
  a.pos = st.in(typed<int32_t>(pos, "pos"), pos.size());
  a.window = window;
  a.scale = scale;
  a.softcap = softcap;
  GN_CHECK(k_cache.has_value() == v_cache.has_value() && k_cache.has_value() == count.has_value(),
           ErrorKind::kInvalidArgument, "give k_cache, v_cache and count together or none");
  if (k_cache) {
    check_ndim(*k_cache, 4, "k_cache");
    check_dim(*k_cache, 0, a.batch, "k_cache");
    check_dim(*k_cache, 2, a.kv_heads, "k_cache");
    check_dim(*k_cache, 3, a.head_dim, "k_cache");
    GN_CHECK(shape_of(*v_cache) == shape_of(*k_cache), ErrorKind::kShape,
             "v_cache must have the shape of k_cache");
    check_ndim(*count, 1, "count");
    check_dim(*count, 0, a.batch, "count");
    a.slots = k_cache->shape(1);
    a.k_cache = st.out(typed<float>(*k_cache, "k_cache", true), k_cache->size(), true);
    a.v_cache = st.out(typed<float>(*v_cache, "v_cache", true), v_cache->size(), true);
    a.host_count = typed<int64_t>(*count, "count");
    a.count = st.in(a.host_count, count->size());
  }
  auto out = new_f32(shape_of(q));
  a.out = st.out(out.mutable_data(), out.size());
  py::gil_scoped_release nogil;
  st.backend().attention(a);
  st.finish();
  return out;
}

template <Dev D>
py::array geglu(py::array gate, py::array up) {
  GN_CHECK(shape_of(gate) == shape_of(up), ErrorKind::kShape, "gate and up must have one shape");
  Stage st(D);
  ops::GegluArgs a;
  a.gate = st.in(typed<float>(gate, "gate"), gate.size());
  a.up = st.in(typed<float>(up, "up"), up.size());
  a.n = gate.size();
  auto out = new_f32(shape_of(gate));
  a.out = st.out(out.mutable_data(), out.size());
  py::gil_scoped_release nogil;
  st.backend().geglu(a);
  st.finish();
  return out;
}

template <Dev D>
py::array softcap(py::array x, float cap) {
  const float* src = typed<float>(x, "x");
  auto out = new_f32(shape_of(x));
  std::copy(src, src + x.size(), out.mutable_data());
  const int64_t n = x.size();
  Stage st(D);
  float* p = st.out(out.mutable_data(), out.size(), true);
  py::gil_scoped_release nogil;
  st.backend().softcap({p, n, cap});
  st.finish();
  return out;
}

py::array sample(py::array logits, py::array temperature, py::array top_k, py::array top_p,
                 py::array seed, py::array counter) {
  check_ndim(logits, 2, "logits");
  const int64_t B = logits.shape(0), V = logits.shape(1);
  for (auto* p : {&temperature, &top_k, &top_p, &seed, &counter}) {
    check_ndim(*p, 1, "sampling parameter");
    check_dim(*p, 0, B, "sampling parameter");
  }
  const float* lg = typed<float>(logits, "logits");
  const float* t = typed<float>(temperature, "temperature");
  const int32_t* k = typed<int32_t>(top_k, "top_k");
  const float* p = typed<float>(top_p, "top_p");
  const uint64_t* s = typed<uint64_t>(seed, "seed");
  const uint64_t* c = typed<uint64_t>(counter, "counter");
  std::vector<ops::SamplingRow> rows(B);
  for (int64_t b = 0; b < B; ++b) rows[b] = {t[b], k[b], p[b], s[b], c[b]};
  py::array_t<int32_t> out(B);
  int32_t* o = out.mutable_data();
  py::gil_scoped_release nogil;
  ops::sample(lg, B, V, rows.data(), o);
  return out;
}

template <Dev D>
py::array add(py::array x, py::array y) {
  GN_CHECK(shape_of(x) == shape_of(y), ErrorKind::kShape, "x and y must have one shape");
  const float* src = typed<float>(x, "x");
  auto out = new_f32(shape_of(x));
  std::copy(src, src + x.size(), out.mutable_data());
  Stage st(D);
  ops::AddArgs a;
  a.y = st.in(typed<float>(y, "y"), y.size());
  a.n = x.size();
  a.x = st.out(out.mutable_data(), out.size(), true);
  py::gil_scoped_release nogil;
  st.backend().add(a);
  st.finish();
  return out;
}

// def_<op><D>(m): the Python signature of each op (one per line of ops/op_list.h).
using py::arg;
template <Dev D>
void def_embedding(py::module_& m) {
  m.def("embedding", &embedding<D>, arg("table"), arg("dtype"), arg("ids"), arg("scale"));
}
template <Dev D>
void def_rmsnorm(py::module_& m) {
  m.def("rmsnorm", &rmsnorm<D>, arg("x"), arg("w"), arg("eps"), arg("offset"));
}
template <Dev D>
void def_linear(py::module_& m) {
  m.def("linear", &linear<D>, arg("x"), arg("w"), arg("dtype"), arg("bias") = py::none(),
        arg("float_activations") = false, arg("bf16_activations") = false);
}
template <Dev D>
void def_block_diag_linear(py::module_& m) {
  m.def("block_diag_linear", &block_diag_linear<D>, arg("x"), arg("w"), arg("dtype"),
        arg("b") = py::none(), arg("bf16_activations") = false);
}
template <Dev D>
void def_conv1d(py::module_& m) {
  m.def("conv1d", &conv1d<D>, arg("x"), arg("pos"), arg("w"), arg("bias") = py::none(),
        arg("state") = py::none());
}
template <Dev D>
void def_rglru_scan(py::module_& m) {
  m.def("rglru_scan", &rglru_scan<D>, arg("x"), arg("gate_x"), arg("gate_a"), arg("a_param"),
        arg("pos"), arg("h"));
}
template <Dev D>
void def_rope(py::module_& m) {
  m.def("rope", &rope<D>, arg("x"), arg("pos"), arg("rot_dims"), arg("base"),
        arg("linear_factor") = 1.0f);
}
template <Dev D>
void def_attention(py::module_& m) {
  m.def("attention", &attention<D>, arg("q"), arg("k"), arg("v"), arg("pos"), arg("window"),
        arg("scale"), arg("softcap") = 0.0f, arg("k_cache") = py::none(),
        arg("v_cache") = py::none(), arg("count") = py::none());
}
template <Dev D>
void def_geglu(py::module_& m) {
  m.def("geglu", &geglu<D>, arg("gate"), arg("up"));
}
template <Dev D>
void def_softcap(py::module_& m) {
  m.def("softcap", &softcap<D>, arg("x"), arg("cap"));
}
template <Dev D>
void def_add(py::module_& m) {
  m.def("add", &add<D>, arg("x"), arg("y"));
}

// Registers the op bindings of device D in module m: every op of ops/op_list.h on the CPU,
// those with kernels (`only`) on the CUDA devices.
template <Dev D>
void bind_device_ops(py::module_& m, const std::vector<std::string>& only) {
  auto want = [&](const char* op) {
    return D == Dev::kCpu || std::find(only.begin(), only.end(), op) != only.end();
  };
#define GN_BIND_OP(name, Args) \
  if (want(#name)) def_##name<D>(m);
  GN_ALL_OPS(GN_BIND_OP)
#undef GN_BIND_OP
}

}  // namespace

void bind_ops(py::module_& m) {
  bind_device_ops<Dev::kCpu>(m, {});
  m.def("quantize_q8_0", &quantize_q8_0, arg("x"));
  m.def("pack_q8_0r16", &pack_q8_0r16, arg("blocks"), arg("in_place") = false,
        arg("out") = py::none());
  m.def("pack_bf16r32", &pack_bf16r32, arg("w"), arg("in_place") = false, arg("out") = py::none());
  m.def("quantize_activations", &quantize_activations, arg("x"), arg("block"));
  m.def("sample", &sample, arg("logits"), arg("temperature"), arg("top_k"), arg("top_p"),
        arg("seed"), arg("counter"));
  m.def("sample_uniform", &ops::sample_uniform, arg("seed"), arg("counter"));

  // The CUDA kernels on the SIMT emulator (host memory; slow; for verification) and on a GPU.
  py::module_ emu = m.def_submodule("cuda_emu", "CUDA kernels run on the CPU SIMT emulator");
  emu.def("ops_supported", &ops::emu::ops_supported);
  bind_device_ops<Dev::kEmu>(emu, ops::emu::ops_supported());
  py::module_ gpu = m.def_submodule("cuda", "CUDA kernels on a GPU (arrays copied in and out)");
  gpu.def("ops_supported", &ops::cuda::ops_supported);
  bind_device_ops<Dev::kCuda>(gpu, ops::cuda::ops_supported());
}

}  // namespace gemma_native::bindings

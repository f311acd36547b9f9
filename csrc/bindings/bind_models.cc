// gemma_native._core model classes.  The Python facade builds the config dict and the weight
// dict (engine tensor names -> (array, dtype code)); the model keeps those arrays alive.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>

#include "bindings/arrays.h"
#include "bindings/devices.h"
#include "model/gemma.h"
#include "model/griffin.h"
#include "ops/interrupt.h"

namespace gemma_native::bindings {

namespace {

using model::GemmaConfig;
using model::GemmaModel;
using model::GemmaState;
using model::GriffinConfig;
using model::GriffinModel;
using model::GriffinState;

// A native model plus the weight arrays it points into (kept alive as long as it lives).
template <class M>
struct PyModel {
  std::unique_ptr<M> model;
  py::dict keep_alive;
};
using PyGriffin = PyModel<GriffinModel>;
using PyGemma = PyModel<GemmaModel>;

template <class T>
T get(const py::dict& d, const char* key) {
  GN_CHECK(d.contains(key), ErrorKind::kModelFormat, std::string("config is missing '") + key + "'");
  try {
    return d[key].cast<T>();
  } catch (const py::cast_error&) {
    fail(ErrorKind::kModelFormat, std::string("config value '") + key + "' has the wrong type");
  }
}

// An optional key: `fallback` when absent.
template <class T>
T get_or(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) ? get<T>(d, key) : fallback;
}

GriffinConfig config_from_dict(const py::dict& d) {
  GriffinConfig c;
  c.vocab_size = get<int64_t>(d, "vocab_size");
  c.width = get<int64_t>(d, "width");
  c.num_heads = get<int64_t>(d, "num_heads");
  c.head_dim = get<int64_t>(d, "head_dim");
  c.kv_heads = get<int64_t>(d, "kv_heads");
  c.lru_width = get<int64_t>(d, "lru_width");
  c.mlp_width = get<int64_t>(d, "mlp_width");
  c.window = get<int64_t>(d, "window");
  c.conv_width = get<int64_t>(d, "conv_width");
  c.rot_dims = get<int64_t>(d, "rot_dims");
  c.rope_base = get<float>(d, "rope_base");
  c.logits_soft_cap = get<float>(d, "logits_soft_cap");
  c.embed_scale = get<float>(d, "embed_scale");
  c.norm_eps = get<float>(d, "norm_eps");
  c.norm_offset = get<float>(d, "norm_offset");
  c.float_activations = get_or<bool>(d, "float_activations", false);
  for (const auto& b : get<std::vector<std::string>>(d, "blocks")) {
    if (b == "recurrent") {
      c.blocks.push_back(model::BlockType::kRecurrent);
    } else if (b == "attention") {
      c.blocks.push_back(model::BlockType::kAttention);
    } else {
      fail(ErrorKind::kUnsupported, "unknown Griffin block type '" + b + "'");
    }
  }
  return c;
}

GemmaConfig gemma_config_from_dict(const py::dict& d) {
  GemmaConfig c;
  c.vocab_size = get<int64_t>(d, "vocab_size");
  c.width = get<int64_t>(d, "width");
  c.num_heads = get<int64_t>(d, "num_heads");
  c.kv_heads = get<int64_t>(d, "kv_heads");
  c.head_dim = get<int64_t>(d, "head_dim");
  c.mlp_width = get<int64_t>(d, "mlp_width");
  c.window = get<int64_t>(d, "window");
  c.max_context = get<int64_t>(d, "max_context");
  for (const auto& t : get<std::vector<std::string>>(d, "layer_types")) {
    GN_CHECK(t == "sliding" || t == "global", ErrorKind::kUnsupported,
             "unknown attention layer type '" + t + "'");
    c.sliding.push_back(t == "sliding");
  }
  c.rope_base_local = get<float>(d, "rope_base_local");
  c.rope_base_global = get<float>(d, "rope_base_global");
  c.rope_factor_global = get_or<float>(d, "rope_factor_global", 1.0f);
  c.query_scale = get<float>(d, "query_scale");
  c.attn_softcap = get<float>(d, "attn_softcap");
  c.final_softcap = get<float>(d, "final_softcap");
  c.post_norms = get<bool>(d, "post_norms");
  c.qk_norm = get<bool>(d, "qk_norm");
  c.embed_scale = get<float>(d, "embed_scale");
  c.norm_eps = get<float>(d, "norm_eps");
  c.norm_offset = get<float>(d, "norm_offset");
  c.float_activations = get_or<bool>(d, "float_activations", false);
  c.gelu_f16_table = get_or<bool>(d, "gelu_f16_table", false);
  return c;
}

// weights: engine name -> (array, dtype code).  Fills `map` and keeps the arrays in `keep`.
model::TensorMap tensor_map(const py::dict& weights, py::dict& keep) {
  model::TensorMap map;
  for (auto item : weights) {
    const std::string name = item.first.cast<std::string>();
    auto pair = item.second.cast<py::tuple>();
    GN_CHECK(pair.size() == 2, ErrorKind::kInvalidArgument, "weights values are (array, dtype)");
    py::array arr = pair[0].cast<py::array>();
    model::TensorRef t;
    t.dtype = dtype_from_code(pair[1].cast<int>());
    t.data = weight_ptr(arr, t.dtype, name.c_str());
    t.shape = weight_shape(arr, t.dtype);
    map[name] = t;
    keep[py::str(name)] = arr;
  }
  return map;
}

std::unique_ptr<PyGriffin> make_griffin(const py::dict& cfg, const py::dict& weights,
                                        const std::string& device) {
  auto g = std::make_unique<PyGriffin>();
  const model::TensorMap map = tensor_map(weights, g->keep_alive);
  ops::Backend& be = backend_for(device);
  g->model = std::make_unique<GriffinModel>(config_from_dict(cfg), map, be);
  if (be.copies_weights()) g->keep_alive = py::dict();  // the backend holds its own copy
  return g;
}

std::unique_ptr<PyGemma> make_gemma(const py::dict& cfg, const py::dict& weights) {
  auto g = std::make_unique<PyGemma>();
  const model::TensorMap map = tensor_map(weights, g->keep_alive);
  g->model = std::make_unique<GemmaModel>(gemma_config_from_dict(cfg), map);
  return g;
}

// A float32 numpy copy of v, made after a GIL-free call filled v.
py::array_t<float> to_array(const std::vector<float>& v) {
  py::array_t<float> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

// The poll a forward runs every ~50 ms on the calling thread (ops/interrupt.h): Python's
// signal handlers, so Ctrl-C stops a long prefill.  PyErr_CheckSignals does nothing outside
// the main thread.  The exception it leaves (KeyboardInterrupt) is raised by forward().
bool poll_python_signals() {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

template <class M, class S>
py::array forward(PyModel<M>& g, py::array tokens, const std::vector<S*>& states,
                  bool all_positions) {
  check_ndim(tokens, 2, "tokens");
  const int64_t B = tokens.shape(0), T = tokens.shape(1);
  GN_CHECK(static_cast<int64_t>(states.size()) == B, ErrorKind::kShape,
           "need one state per row of tokens (" + std::to_string(B) + "), got " +
               std::to_string(states.size()));
  const int32_t* tok = typed<int32_t>(tokens, "tokens");
  const int64_t V = g.model->config().vocab_size;
  std::vector<py::ssize_t> shape = all_positions ? std::vector<py::ssize_t>{B, T, V}
                                                 : std::vector<py::ssize_t>{B, V};
  py::array_t<float> logits(shape);
  float* out = logits.mutable_data();
  try {
    py::gil_scoped_release nogil;
    ops::PollScope poll(&poll_python_signals);
    g.model->forward(tok, B, T, states.data(), all_positions, out);
  } catch (const ops::Interrupted&) {  // the states are as before the call (model forward)
    if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }
  return logits;
}

}  // namespace

void bind_models(py::module_& m) {
  py::class_<GriffinState>(m, "GriffinState",
                           "Fixed-size per-sequence state of a Griffin model (one call at a time).")
      .def_property_readonly("pos", [](const GriffinState& s) { return s.pos; },
                             "Tokens consumed so far (the position of the next token).")
      .def_property_readonly("nbytes", [](const GriffinState& s) {
        return static_cast<int64_t>(s.data.bytes());
      })
      .def("clone", [](const GriffinState& s) {
        py::gil_scoped_release nogil;
        return s.clone();
      })
      .def("download", [](const GriffinState& s) {
        std::vector<float> v;
        {
          py::gil_scoped_release nogil;
          v = s.download();
        }
        return to_array(v);
      }, "A float32 copy of the state's memory, wherever it lives.")
      .def("load", [](GriffinState& s, py::array_t<float, py::array::c_style> a, int64_t pos) {
        GN_CHECK(a.ndim() == 1 && a.shape(0) == s.data.size(), ErrorKind::kShape,
                 "state data must be float32 of shape (" + std::to_string(s.data.size()) + ",)");
        const float* p = a.data();
        py::gil_scoped_release nogil;
        s.upload(p, pos);
      }, "Overwrites the state with a float32 array from download() and sets its position.");

  py::class_<PyGriffin>(m, "GriffinModel")
      .def(py::init(&make_griffin), py::arg("config"), py::arg("weights"),
           py::arg("device") = "cpu")
      .def_property_readonly("device", [](const PyGriffin& g) {
        return std::string(g.model->backend().name());
      })
      .def_property_readonly("graph_replays", [](const PyGriffin& g) {
        return g.model->graph_replays();
      }, "Decode steps run from a captured graph (device backends with graphs).")
      .def("new_state", [](const PyGriffin& g) { return g.model->new_state(); })
      .def_property_readonly("max_context", [](const PyGriffin&) { return int64_t{INT32_MAX}; },
                             "Positions a sequence may reach (int32 positions; no other limit).")
      .def_property_readonly("state_floats", [](const PyGriffin& g) {
        return g.model->state_floats();
      })
      .def("forward", &forward<GriffinModel, GriffinState>, py::arg("tokens"), py::arg("states"),
           py::arg("all_positions") = false,
           "tokens int32 [B, T]; states: B GriffinState; returns logits [B, T, V] or [B, V].");

  py::class_<GemmaState>(m, "GemmaState", "KV cache of one sequence of a Gemma model.")
      .def_property_readonly("pos", [](const GemmaState& s) { return s.pos; })
      .def_property_readonly("nbytes", &GemmaState::nbytes)
      .def("clone", [](const GemmaState& s) {
        py::gil_scoped_release nogil;
        return s.clone();
      });

  py::class_<PyGemma>(m, "GemmaModel")
      .def(py::init(&make_gemma), py::arg("config"), py::arg("weights"))
      .def("new_state", [](const PyGemma& g) { return g.model->new_state(); })
      .def_property_readonly("max_context", [](const PyGemma& g) {
        return g.model->config().max_context;
      }, "Positions a sequence may reach (the model's max_position_embeddings).")
      .def("state_floats", [](const PyGemma& g, int64_t pos) {
        GN_CHECK(pos >= 0, ErrorKind::kInvalidArgument, "position must be >= 0");
        return g.model->state_floats(pos);
      })
      .def("export_state", [](const PyGemma& g, const GemmaState& s) {
        std::vector<float> v;
        {
          py::gil_scoped_release nogil;
          v = g.model->export_state(s);
        }
        return to_array(v);
      })
      .def("import_state", [](const PyGemma& g, GemmaState& s,
                              py::array_t<float, py::array::c_style | py::array::forcecast> data,
                              int64_t pos) {
        GN_CHECK(pos >= 0, ErrorKind::kInvalidArgument, "position must be >= 0");
        GN_CHECK(data.ndim() == 1 && data.shape(0) == g.model->state_floats(pos),
                 ErrorKind::kInvalidArgument,
                 "state data must be float32 of shape (" +
                     std::to_string(g.model->state_floats(pos)) + ",) for position " +
                     std::to_string(pos));
        const float* p = data.data();
        py::gil_scoped_release nogil;
        g.model->import_state(&s, p, pos);
      })
      .def("forward", &forward<GemmaModel, GemmaState>, py::arg("tokens"), py::arg("states"),
           py::arg("all_positions") = false,
           "tokens int32 [B, T]; states: B GemmaState; returns logits [B, T, V] or [B, V].");
}

}  // namespace gemma_native::bindings

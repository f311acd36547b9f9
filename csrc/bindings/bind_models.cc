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
using model::GriffinConfig;
using model::GriffinModel;
using model::State;

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

GriffinConfig griffin_config_from_dict(const py::dict& d) {
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

// A model on `device` ("cpu", "cuda-emu", "cuda[:N]") over the weight arrays.
template <class M, auto config_from>
std::unique_ptr<PyModel<M>> make_model(const py::dict& cfg, const py::dict& weights,
                                       const std::string& device) {
  auto g = std::make_unique<PyModel<M>>();
  const model::TensorMap map = tensor_map(weights, g->keep_alive);
  ops::Backend& be = backend_for(device);
  g->model = std::make_unique<M>(config_from(cfg), map, be);
  if (be.copies_weights()) g->keep_alive = py::dict();  // the backend holds its own copy
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

template <class M>
py::array forward(PyModel<M>& g, py::array tokens, const std::vector<State*>& states,
                  bool all_positions) {
  check_ndim(tokens, 2, "tokens");
  const int64_t B = tokens.shape(0), T = tokens.shape(1);
  GN_CHECK(static_cast<int64_t>(states.size()) == B, ErrorKind::kShape,
           "need one state per row of tokens (" + std::to_string(B) + "), got " +
               std::to_string(states.size()));
  const int32_t* tok = typed<int32_t>(tokens, "tokens");
  const int64_t V = g.model->vocab_size();
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

template <class M>
void bind_model_class(py::class_<PyModel<M>>& c) {
  using P = PyModel<M>;
  c.def_property_readonly("device",
                          [](const P& g) { return std::string(g.model->backend().name()); })
      .def_property_readonly("graph_replays", [](const P& g) { return g.model->graph_replays(); },
                             "Decode steps run from a captured graph (device backends with graphs).")
      .def("new_state", [](const P& g) { return g.model->new_state(); })
      .def_property_readonly("max_context", [](const P& g) { return g.model->max_context(); },
                             "Positions a sequence may reach.")
      .def("forward", &forward<M>, py::arg("tokens"), py::arg("states"),
           py::arg("all_positions") = false,
           "tokens int32 [B, T]; states: B State of this model; returns logits [B, T, V] or "
           "[B, V].");
}

}  // namespace

void bind_models(py::module_& m) {
  py::class_<State>(m, "State",
                    "What one sequence carries between calls, in the model's backend memory (one "
                    "call at a time).")
      .def_property_readonly("pos", [](const State& s) { return s.pos; },
                             "Tokens consumed so far (the position of the next token).")
      .def_property_readonly("nbytes", &State::nbytes, "Bytes of memory the state holds now.")
      .def("clone", [](const State& s) {
        py::gil_scoped_release nogil;
        return s.clone();
      })
      .def("saved_floats", [](const State& s, int64_t pos) {
        GN_CHECK(pos >= 0, ErrorKind::kInvalidArgument, "position must be >= 0");
        return s.saved_floats(pos);
      }, py::arg("pos"), "Length of save() for a state at position pos.")
      .def("save", [](const State& s) {
        std::vector<float> v;
        {
          py::gil_scoped_release nogil;
          v = s.save();
        }
        return to_array(v);
      }, "A float32 copy of the state (its length depends only on pos), wherever it lives.")
      .def("restore", [](State& s, py::array_t<float, py::array::c_style | py::array::forcecast> a,
                         int64_t pos) {
        GN_CHECK(pos >= 0, ErrorKind::kInvalidArgument, "position must be >= 0");
        const int64_t want = s.saved_floats(pos);
        GN_CHECK(a.ndim() == 1 && a.shape(0) == want, ErrorKind::kInvalidArgument,
                 "state data must be float32 of shape (" + std::to_string(want) +
                     ",) for position " + std::to_string(pos));
        const float* p = a.data();
        py::gil_scoped_release nogil;
        s.restore(p, pos);
      }, py::arg("data"), py::arg("pos"),
         "Overwrites the state with data from save() and sets its position.");

  py::class_<PyGriffin> griffin(m, "GriffinModel");
  griffin.def(py::init(&make_model<GriffinModel, &griffin_config_from_dict>), py::arg("config"),
              py::arg("weights"), py::arg("device") = "cpu");
  bind_model_class(griffin);
  py::class_<PyGemma> gemma(m, "GemmaModel");
  gemma.def(py::init(&make_model<GemmaModel, &gemma_config_from_dict>), py::arg("config"),
            py::arg("weights"), py::arg("device") = "cpu");
  bind_model_class(gemma);
}

}  // namespace gemma_native::bindings

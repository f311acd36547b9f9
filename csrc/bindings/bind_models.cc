// gemma_native._core model classes.  The Python facade builds the config dict and the weight
// dict (engine tensor names -> (array, dtype code)); the model keeps those arrays alive.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <variant>

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

// The config dict the Python loaders build, key by key: each key names a member of the
// config struct (model/griffin.h, model/gemma.h).  These tables are the one definition of the
// keys; _core.GriffinModel.config_keys / GemmaModel.config_keys export them (required or
// optional), and _core.check_config validates a dict without building a model.
template <class C>
struct ConfigField {
  const char* key;
  std::variant<int64_t C::*, float C::*, bool C::*> member;
  bool required = true;
};

template <class T>
T get(const py::dict& d, const char* key) {
  try {
    return d[key].cast<T>();
  } catch (const py::cast_error&) {
    fail(ErrorKind::kModelFormat, std::string("config value '") + key + "' has the wrong type");
  }
}

// Sets every field of c from d; a missing required key is an error, unknown keys too (a
// misspelt key must not be silently ignored).
template <class C>
void read_fields(const py::dict& d, const std::vector<ConfigField<C>>& fields,
                 const std::vector<const char*>& also_known, C* c) {
  for (const ConfigField<C>& f : fields) {
    if (!d.contains(f.key)) {
      GN_CHECK(!f.required, ErrorKind::kModelFormat,
               std::string("config is missing '") + f.key + "'");
      continue;
    }
    std::visit([&](auto member) {
      using T = std::remove_reference_t<decltype(c->*member)>;
      c->*member = get<T>(d, f.key);
    }, f.member);
  }
  for (auto item : d) {
    const std::string k = item.first.cast<std::string>();
    bool known = std::any_of(fields.begin(), fields.end(), [&](const ConfigField<C>& f) {
      return k == f.key;
    });
    for (const char* a : also_known) known = known || k == a;
    GN_CHECK(known, ErrorKind::kModelFormat, "unknown config key '" + k + "'");
  }
}

const std::vector<ConfigField<GriffinConfig>>& griffin_fields() {
  using C = GriffinConfig;
  static const std::vector<ConfigField<C>> f = {
      {"vocab_size", &C::vocab_size},   {"width", &C::width},
      {"num_heads", &C::num_heads},     {"head_dim", &C::head_dim},
      {"kv_heads", &C::kv_heads},       {"lru_width", &C::lru_width},
      {"mlp_width", &C::mlp_width},     {"window", &C::window},
      {"conv_width", &C::conv_width},   {"rot_dims", &C::rot_dims},
      {"rope_base", &C::rope_base},     {"logits_soft_cap", &C::logits_soft_cap},
      {"embed_scale", &C::embed_scale}, {"norm_eps", &C::norm_eps},
      {"norm_offset", &C::norm_offset}, {"float_activations", &C::float_activations, false},
      {"bf16_activations", &C::bf16_activations, false},
  };
  return f;
}
constexpr const char* kGriffinListKey = "blocks";  // list of "recurrent" / "attention"

const std::vector<ConfigField<GemmaConfig>>& gemma_fields() {
  using C = GemmaConfig;
  static const std::vector<ConfigField<C>> f = {
      {"vocab_size", &C::vocab_size},
      {"width", &C::width},
      {"num_heads", &C::num_heads},
      {"kv_heads", &C::kv_heads},
      {"head_dim", &C::head_dim},
      {"mlp_width", &C::mlp_width},
      {"window", &C::window},
      {"max_context", &C::max_context},
      {"rope_base_local", &C::rope_base_local},
      {"rope_base_global", &C::rope_base_global},
      {"rope_factor_global", &C::rope_factor_global, false},
      {"query_scale", &C::query_scale},
      {"attn_softcap", &C::attn_softcap},
      {"final_softcap", &C::final_softcap},
      {"post_norms", &C::post_norms},
      {"qk_norm", &C::qk_norm},
      {"embed_scale", &C::embed_scale},
      {"norm_eps", &C::norm_eps},
      {"norm_offset", &C::norm_offset},
      {"float_activations", &C::float_activations, false},
      {"gelu_f16_table", &C::gelu_f16_table, false},
      {"bf16_activations", &C::bf16_activations, false},
  };
  return f;
}
constexpr const char* kGemmaListKey = "layer_types";  // list of "sliding" / "global"

GriffinConfig griffin_config_from_dict(const py::dict& d) {
  GriffinConfig c;
  read_fields(d, griffin_fields(), {kGriffinListKey}, &c);
  GN_CHECK(d.contains(kGriffinListKey), ErrorKind::kModelFormat,
           std::string("config is missing '") + kGriffinListKey + "'");
  for (const auto& b : get<std::vector<std::string>>(d, kGriffinListKey)) {
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
  read_fields(d, gemma_fields(), {kGemmaListKey}, &c);
  GN_CHECK(d.contains(kGemmaListKey), ErrorKind::kModelFormat,
           std::string("config is missing '") + kGemmaListKey + "'");
  for (const auto& t : get<std::vector<std::string>>(d, kGemmaListKey)) {
    GN_CHECK(t == "sliding" || t == "global", ErrorKind::kUnsupported,
             "unknown attention layer type '" + t + "'");
    c.sliding.push_back(t == "sliding");
  }
  return c;
}

// {key: "required" | "optional"} of a config table (the list key is required).
template <class C>
py::dict config_keys(const std::vector<ConfigField<C>>& fields, const char* list_key) {
  py::dict out;
  for (const ConfigField<C>& f : fields) out[f.key] = f.required ? "required" : "optional";
  out[list_key] = "required";
  return out;
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

  m.def("check_config", [](const std::string& family, const py::dict& d) {
    if (family == "griffin") {
      griffin_config_from_dict(d).validate();
    } else if (family == "gemma") {
      gemma_config_from_dict(d).validate();
    } else {
      fail(ErrorKind::kInvalidArgument, "unknown model family '" + family + "'");
    }
  }, py::arg("family"), py::arg("config"),
     "Validates an engine config dict ('griffin' or 'gemma') as the model constructor does; "
     "raises ModelFormatError / UnsupportedModelError.");

  py::class_<PyGriffin> griffin(m, "GriffinModel");
  griffin.def(py::init(&make_model<GriffinModel, &griffin_config_from_dict>), py::arg("config"),
              py::arg("weights"), py::arg("device") = "cpu");
  bind_model_class(griffin);
  griffin.attr("config_keys") = config_keys(griffin_fields(), kGriffinListKey);
  py::class_<PyGemma> gemma(m, "GemmaModel");
  gemma.def(py::init(&make_model<GemmaModel, &gemma_config_from_dict>), py::arg("config"),
            py::arg("weights"), py::arg("device") = "cpu");
  bind_model_class(gemma);
  gemma.attr("config_keys") = config_keys(gemma_fields(), kGemmaListKey);
}

}  // namespace gemma_native::bindings

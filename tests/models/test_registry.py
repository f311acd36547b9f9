"""The architecture registry (gemma_native.models): every family's tiny presets build through
random_model and, written out as a checkpoint (Hugging Face folder; GGUF where the family reads
GGUF), load back through load() with the same config and the same logits.  Also the
random:PRESET spec helpers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import gemma_native as gn
from gemma_native.loading.safetensors import write_safetensors
from gemma_native.models import (
    ARCHITECTURES,
    PRESETS,
    for_config,
    for_hf_config,
    for_preset,
)
from gemma_native.models.gemma import GemmaConfig
from gemma_native.models.griffin import GriffinConfig
from gemma_native.random_model import (
    model_from_spec,
    parse_model_spec,
    preset_config,
    random_tensors,
)

TINY = sorted(p for arch in ARCHITECTURES.values() for p in arch.presets if p.endswith("-tiny"))
IDS = [2, 17, 33, 5, 9, 101]


def _hf_config_json(cfg) -> dict:
    """A Hugging Face config.json for a config (the inverse of the family's parser)."""
    common = {"vocab_size": cfg.vocab_size, "hidden_size": cfg.width,
              "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
              "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
              "rms_norm_eps": cfg.rms_norm_eps, "bos_token_id": cfg.bos_token_id,
              "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id}
    if isinstance(cfg, GriffinConfig):
        return {**common, "model_type": "recurrent_gemma",
                "architectures": ["RecurrentGemmaForCausalLM"],
                "lru_width": cfg.lru_width, "intermediate_size": 2 * cfg.mlp_width,
                "attention_window_size": cfg.attention_window_size,
                "block_types": list(cfg.block_types), "conv1d_width": cfg.conv1d_width,
                "logits_soft_cap": cfg.logits_soft_cap,
                "embeddings_scale_by_sqrt_dim": cfg.embeddings_scale_by_sqrt_dim,
                "rope_theta": cfg.rope_theta,
                "partial_rotary_factor": cfg.partial_rotary_factor}
    assert isinstance(cfg, GemmaConfig)
    model_type = {"gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3_text"}
    return {**common, "model_type": model_type[cfg.architecture],
            "intermediate_size": cfg.mlp_width,
            "max_position_embeddings": cfg.max_position_embeddings,
            "layer_types": ["sliding_attention" if t == "sliding" else "full_attention"
                            for t in cfg.layer_types],
            "sliding_window": cfg.sliding_window or None,
            "rope_theta": cfg.rope_theta, "rope_local_base_freq": cfg.rope_local_theta,
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
            "attn_logit_softcapping": cfg.attn_logit_softcapping or None,
            "final_logit_softcapping": cfg.final_logit_softcapping or None}


def _write_hf_folder(folder, cfg, seed):
    folder.mkdir()
    tensors = random_tensors(cfg, seed)
    write_safetensors(str(folder / "model.safetensors"),
                      {name: (t.data, t.dtype) for name, t in tensors.items()})
    (folder / "config.json").write_text(json.dumps(_hf_config_json(cfg)))
    return folder


def test_every_preset_belongs_to_one_family():
    assert TINY and all(arch.presets for arch in ARCHITECTURES.values())
    owners = {}
    for arch in ARCHITECTURES.values():
        for name in arch.presets:
            assert name not in owners, f"{name} in two families"
            owners[name] = arch
    assert owners.keys() == PRESETS.keys() == gn.random_model.PRESETS.keys()
    for name, arch in owners.items():
        assert for_preset(name) is arch
        cfg = preset_config(name)
        assert isinstance(cfg, arch.config_class) and for_config(cfg) is arch
    assert for_preset("no-such-preset") is None
    with pytest.raises(gn.InvalidArgumentError):
        for_config(object())


@pytest.mark.parametrize("preset", TINY)
def test_random_model_and_saved_checkpoint_load_alike(tmp_path, preset):
    """random_model builds through the registry; the same tensors written as a Hugging Face
    folder load through load() (the same registry entry, found from config.json) into the
    same config and bit-identical logits."""
    cfg = preset_config(preset)
    arch = for_preset(preset)
    made = gn.random_model(preset, seed=3)
    assert made.config == cfg and made.path == f"random:{preset}"
    folder = _write_hf_folder(tmp_path / preset, cfg, seed=3)
    assert for_hf_config(json.loads((folder / "config.json").read_text())) is arch
    loaded = gn.load(folder)
    assert loaded.config == cfg
    assert loaded.weight_dtype == made.weight_dtype == "bfloat16"
    assert loaded.weights_nbytes == made.weights_nbytes
    np.testing.assert_array_equal(loaded.logits(IDS), made.logits(IDS))
    # int8 on both sides: the same Q8_0 blocks (a Gemma checkpoint's embedding scale follows
    # its file dtype, bfloat16 here; a random model's follows the dtype asked for)
    scale = {"embed_scale": cfg.embed_scale} if isinstance(cfg, GemmaConfig) else {}
    np.testing.assert_array_equal(
        gn.load(folder, dtype="int8").logits(IDS),
        gn.random_model(preset, dtype="int8", seed=3, **scale).logits(IDS))


# Gemma tiny presets whose every field a GGUF file can say (gemma2-tiny's query scalar is
# not head_dim, which GGUF metadata cannot express).
GGUF_PRESETS = ["gemma-tiny", "gemma3-tiny"]


def _write_gguf(path, cfg, seed):
    """The random tensors of ``cfg`` as an F32 GGUF file under llama.cpp's names (norm weights
    stored as 1 + w, as llama.cpp's converter does)."""
    gguf = pytest.importorskip("gguf")
    arch = for_config(cfg)
    hf = random_tensors(cfg, seed)
    hf_names = [name for _, name, _, _ in arch.hf_tensors.expand(cfg)]
    engine_of = {name: eng for _, name, eng, _ in arch.hf_tensors.expand(cfg)}
    w = gguf.GGUFWriter(str(path), cfg.architecture)
    a = cfg.architecture
    w.add_uint32(f"{a}.embedding_length", cfg.width)
    w.add_uint32(f"{a}.block_count", cfg.num_layers)
    w.add_uint32(f"{a}.attention.head_count", cfg.num_heads)
    w.add_uint32(f"{a}.attention.head_count_kv", cfg.num_kv_heads)
    w.add_uint32(f"{a}.attention.key_length", cfg.head_dim)
    w.add_uint32(f"{a}.attention.value_length", cfg.head_dim)
    w.add_uint32(f"{a}.feed_forward_length", cfg.mlp_width)
    w.add_uint32(f"{a}.context_length", cfg.max_position_embeddings)
    w.add_float32(f"{a}.rope.freq_base", cfg.rope_theta)
    assert cfg.rms_norm_eps == 1e-6  # the default: GGUF would store it as float32
    if cfg.sliding_window:
        w.add_uint32(f"{a}.attention.sliding_window", cfg.sliding_window)
    gguf_name = {eng: name for _, name, eng, _ in arch.gguf_tensors.expand(cfg)}
    assert sorted(gguf_name) == sorted(engine_of.values())  # the two tables agree
    for name in hf_names:
        t = hf[name]
        values = t.as_float32()
        if t.dtype == "float32" and values.ndim == 1 and "norm" in engine_of[name]:
            values = (np.float32(1) + values).astype(np.float32)
        w.add_tensor(gguf_name[engine_of[name]], np.ascontiguousarray(values))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("preset", GGUF_PRESETS)
def test_gguf_checkpoint_loads_like_the_random_model(tmp_path, preset):
    cfg = preset_config(preset, dtype="float32")
    assert for_preset(preset).gguf_tensors is not None
    path = _write_gguf(tmp_path / f"{preset}.gguf", cfg, seed=4)
    # activations="float32": without llama.cpp's float16-table GELU (the default for GGUF)
    loaded = gn.load(path, activations="float32")
    # GGUF norms hold 1 + w (offset 0); everything else is the preset's config
    assert loaded.config == dataclasses.replace(cfg, norm_offset=0.0)
    assert loaded.weight_dtype == "float32"
    made = gn.random_model(preset, dtype="float32", seed=4)
    np.testing.assert_array_equal(loaded.logits(IDS), made.logits(IDS))


def test_model_specs(tmp_path):
    assert parse_model_spec("random:gemma3-tiny") == "gemma3-tiny"
    assert parse_model_spec("some/folder") is None
    assert parse_model_spec("model.gguf") is None
    assert parse_model_spec(tmp_path) is None  # os.PathLike: a path
    with pytest.raises(gn.InvalidArgumentError, match="bogus"):
        parse_model_spec("random:bogus")
    with pytest.raises(gn.InvalidArgumentError):
        parse_model_spec(None)
    m = model_from_spec("random:gemma-tiny", dtype="float32", seed=2)
    assert m.config == preset_config("gemma-tiny", dtype="float32")
    assert m.weight_dtype == "float32" and m.path == "random:gemma-tiny"
    assert model_from_spec("random:gemma-tiny").weight_dtype == "bfloat16"
    np.testing.assert_array_equal(
        m.logits(IDS), gn.random_model("gemma-tiny", dtype="float32", seed=2).logits(IDS))
    with pytest.raises(gn.InvalidArgumentError, match="n_threads"):
        model_from_spec("random:gemma-tiny", n_threads=-1)
    cfg = preset_config("recurrentgemma-tiny")
    folder = _write_hf_folder(tmp_path / "ckpt", cfg, seed=1)
    assert model_from_spec(str(folder)).config == model_from_spec(folder).config == cfg
    with pytest.raises(gn.ModelNotFoundError):
        model_from_spec(str(tmp_path / "missing"))

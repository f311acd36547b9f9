"""Test helper: an F32 copy of a GGUF file (every tensor dequantized, metadata kept), written
with the gguf package.  Running llama.cpp and gemma_native on such a copy takes llama.cpp's
8-bit activation quantization out of the comparison: what remains is the model math."""

from __future__ import annotations

import numpy as np


def write_f32_copy(src_path: str, dst_path: str) -> str:
    import gguf

    from gemma_native.loading.gguf import read_gguf

    src = read_gguf(src_path)
    arch = src.metadata["general.architecture"]
    w = gguf.GGUFWriter(dst_path, arch)
    vt = gguf.GGUFValueType
    for key, value in src.metadata.items():
        if key == "general.architecture":  # written by GGUFWriter itself
            continue
        kind = src.metadata_types[key]
        if kind.startswith("ARRAY["):
            sub = getattr(vt, kind[len("ARRAY["):-1])
            w.add_key_value(key, value if sub == vt.STRING else list(value), vt.ARRAY,
                            sub_type=sub)
        else:
            w.add_key_value(key, value, getattr(vt, kind))
    for name, t in src.tensors.items():
        w.add_tensor(name, t.dequantize(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst_path

#!/usr/bin/env bash
# The test suite on aarch64, emulated (docs/platforms.md):
#   tools/test_aarch64.sh DIR [pytest arguments]
# builds with tools/aarch64_env.sh DIR, then runs pytest in the emulated interpreter: the given
# arguments, or by default the selection CI runs.
set -euo pipefail
DIR="${1:?usage: tools/test_aarch64.sh DIR [pytest arguments]}"
shift
SRC="$(cd "$(dirname "$0")/.." && pwd)"
"$SRC/tools/aarch64_env.sh" "$DIR"
DIR="$(cd "$DIR" && pwd)"
if [ $# -eq 0 ]; then
  # Every CPU kernel against the numpy references and across kernel sets, the models, the
  # tokenizer, loading and the CPU feature detection.  Left to the native run: the CUDA
  # emulator's parametrizations (no GPU on ARM here), the CLI, server, package and reliability
  # tests (each starts fresh interpreters, seconds apiece under qemu), the load fuzzers, and
  # everything that compares against PyTorch references (no torch in this environment), and
  # the two tests that bound the heap's resident size after building an int8 model: under
  # qemu-user the process's RSS is the emulator's, which kept ~50 MB more after the in-place
  # Q8_0R16 packing than after packing into copies (natively both are the weights' size).
  set -- tests/ops tests/models tests/tokenizer tests/loading tests/runtime/test_cpu_features.py \
    -k "not cuda" \
    --deselect tests/loading/test_fuzz_load_gguf.py --deselect tests/loading/test_fuzz_load_safetensors.py \
    --deselect tests/loading/test_load_memory.py::test_load_returns_freed_heap_to_the_system \
    --deselect "tests/loading/test_load_memory.py::test_random_model_peaks_near_its_weights[int8]"
fi
cd "$SRC"
export GEMMA_NATIVE_EXPECT_NEON=1
# The x86 run's expectations do not apply here: the aarch64 build has no SIMDe-emulated x86 sets
# and no CUDA backend.
unset GEMMA_NATIVE_EXPECT_AVX512EMU GEMMA_NATIVE_EXPECT_CUDA GEMMA_NATIVE_REQUIRE_SANITIZERS
exec "$DIR/python" -m pytest -q -p no:cacheprovider "$@"

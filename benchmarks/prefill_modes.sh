#!/bin/sh
# Prefill in every compute mode on this CPU, at the 2B shape (random weights): the runs behind
# the README's "Issue 14 at a glance" table, in one go, for a machine whose CPU kind has cells
# not yet measured (AMX, Zen 4, ...).  Prints the CPU, then per mode the bench's report (its
# ratios to this run's FMA / VDPBF16PS / VPDPBUSD loops), then the bf16 and int8 modes again in
# one pass (GEMMA_NATIVE_MAX_PASS_TOKENS=0) for the A/B of the pass limit.  JSON reports go to
# $OUT (default ./prefill_modes).  ~20-30 min on 2 cores for the 2B;
# MODEL=random:recurrentgemma-tiny QUICK=--quick checks the script itself in a minute.
#   sh benchmarks/prefill_modes.sh                 # ours only
#   PEERS=transformers sh benchmarks/prefill_modes.sh   # + transformers bf16 beside the bf16 mode
set -e
MODEL=${MODEL:-random:recurrentgemma-2b}
OUT=${OUT:-prefill_modes}
PEERS=${PEERS:-none}
QUICK=${QUICK:-}
mkdir -p "$OUT"
grep -m1 "model name" /proc/cpuinfo || true
grep -m1 "^flags" /proc/cpuinfo | tr ' ' '\n' \
    | grep -x -E "avx2|fma|avx512f|avx512_bf16|avx512_vnni|avx_vnni|amx_bf16|amx_int8|amx_tile" \
    | tr '\n' ' ' || true
echo
python -c 'import gemma_native as gn, json; i = gn.backend_info(); print(json.dumps({k: i[k] for k in ("cpu_isa", "bf16_gemm", "int8_gemm", "num_threads", "max_pass_tokens")}))'
run() {  # name, parts, then bench options
    name=$1
    parts=$2
    shift 2
    echo "== $name"
    gemma-native bench "$MODEL" --only "$parts" --prefill 512,2048 $QUICK \
        --json "$OUT/$name.json" "$@"
}
run exact limits,prefill --peers none
if [ "$PEERS" = none ]; then
    run bf16 limits,prefill --peers none --activations bfloat16
else
    run bf16 limits,prefill,peers --activations bfloat16 --peers "$PEERS" --peer-dtype bfloat16 \
        --peer-prefill 512
fi
run int8 limits,prefill --peers none --dtype int8
(
    export GEMMA_NATIVE_MAX_PASS_TOKENS=0
    run bf16_one_pass prefill --peers none --activations bfloat16
    run int8_one_pass prefill --peers none --dtype int8
)

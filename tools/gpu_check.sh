#!/usr/bin/env bash
# GPU contact kit: everything to run on a machine with an NVIDIA GPU, in one go (< 10 minutes).
#
#   tools/gpu_check.sh [OUT_DIR]          (OUT_DIR default: $OUT if set, else ./gpu_check_out)
#
# 1. machine facts (nvidia-smi, nvcc, python, torch);
# 2. builds the package with the CUDA backend for this GPU's architecture (no network: pip
#    --no-build-isolation --no-deps, so scikit-build-core, pybind11, numpy and sentencepiece must
#    be installed) into OUT_DIR's work folder, first on PYTHONPATH;
# 3. the GPU tests (pytest -m gpu);
# 4. benchmarks/cuda_ops.py: every CUDA op at the 2B shapes and the model's decode, GB/s and the
#    fraction of the card's bandwidth;
# 5. benchmarks/gpu_vs_transformers.py: logit agreement, prefill and decode against transformers
#    on the same GPU (RecurrentGemma 2B and Gemma 3 270M shapes).
# Writes OUT_DIR/gpu_check.log and OUT_DIR/gpu_check.json (each step's status, seconds and
# results) plus the steps' own JSON files.  Without a GPU it still builds (CUDA when nvcc is
# found) and runs the same steps in their CPU forms (the emulator smoke run, the CPU dry run),
# reporting the GPU parts as skipped; it exits 0 unless a step that ran failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG="$OUT_DIR/gpu_check.log"
PY=${PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-/tmp/gemma_native_gpu_check}
: > "$LOG"
STEPS="$WORK/steps.jsonl"
mkdir -p "$WORK"
: > "$STEPS"

log() { echo "== $*" | tee -a "$LOG"; }

# step NAME TIMEOUT CMD...: runs CMD with a timeout, appends its output to the log, records
# {"step", "status", "seconds"} (status: ok, failed (rc), timeout, skipped).
step() {
  local name=$1 limit=$2
  shift 2
  log "$name: $*"
  local t0 rc status secs
  t0=$(date +%s%N)
  timeout "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  status=ok
  if [ $rc -eq 124 ]; then status=timeout; elif [ $rc -ne 0 ]; then status="failed ($rc)"; fi
  secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  secs="$((secs / 1000)).$(printf '%03d' $((secs % 1000)))"
  echo "{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $secs}" >> "$STEPS"
  log "$name: $status in ${secs}s"
  [ "$status" = ok ]
}
skip() {
  echo "{\"step\": \"$1\", \"status\": \"skipped\", \"why\": \"$2\"}" >> "$STEPS"
  log "$1: skipped ($2)"
}

# --- 1. facts
GPU=0
ARCH=""
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L >> "$LOG" 2>&1; then
  GPU=1
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >> "$LOG" 2>&1
  ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
fi
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2> /dev/null || true)
{
  echo "gpu: $GPU (compute capability ${ARCH:-none})"
  echo "nvcc: ${NVCC:-none} $([ -n "$NVCC" ] && "$NVCC" --version | tail -n 2 | tr '\n' ' ')"
  echo "python: $($PY --version 2>&1) at $(command -v "$PY")"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
  grep -m1 'model name' /proc/cpuinfo
} >> "$LOG" 2>&1

# --- 2. build (one architecture on a GPU: minutes less than the four of a wheel)
CUDA_MODE=AUTO
CMAKE_ARGS=()
if [ $GPU = 1 ] && [ -n "$ARCH" ]; then
  CUDA_MODE=ON
  CMAKE_ARGS+=(-C "cmake.define.CMAKE_CUDA_ARCHITECTURES=${ARCH}")
fi
rm -rf "$WORK/site"
if ! step build 480 env CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip install -q \
    --no-build-isolation --no-deps --target "$WORK/site" \
    -C "cmake.define.GEMMA_NATIVE_CUDA=${CUDA_MODE}" ${CMAKE_ARGS[@]+"${CMAKE_ARGS[@]}"} \
    -C "build-dir=$WORK/build" .; then
  log "build failed: nothing else can run"
fi
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
step backend_info 60 "$PY" -c "import gemma_native as gn, json
info = gn.backend_info()
print(json.dumps({'version': gn.__version__, 'cpu_isa': info['cpu_isa'], 'cuda': info['cuda']}))
json.dump(info, open('$WORK/backend_info.json', 'w'), default=str)"

# --- 3. GPU tests
if [ $GPU = 1 ]; then
  step pytest_gpu 300 "$PY" -m pytest tests -m gpu -q -p no:cacheprovider \
    --junitxml="$OUT_DIR/pytest_gpu.xml"
else
  skip pytest_gpu "no GPU"
fi

# --- 4. CUDA op benchmark
if [ $GPU = 1 ]; then
  step cuda_ops 240 "$PY" benchmarks/cuda_ops.py --json "$OUT_DIR/cuda_ops.json"
else
  step cuda_ops_emulator_smoke 240 "$PY" benchmarks/cuda_ops.py --device cuda-emu --tiny \
    --steps 2 --iters 1 --json "$WORK/cuda_ops_emu.json"
fi

# --- 5. against transformers on the same device
if $PY -c "import transformers, torch" > /dev/null 2>&1; then
  if [ $GPU = 1 ]; then
    step vs_transformers 300 "$PY" benchmarks/gpu_vs_transformers.py --device cuda \
      --json "$OUT_DIR/vs_transformers.json"
    step vs_transformers_gemma3 240 "$PY" benchmarks/gpu_vs_transformers.py --device cuda \
      --model gemma3 --json "$OUT_DIR/vs_transformers_gemma3.json"
  else
    step vs_transformers_cpu_dry_run 300 "$PY" benchmarks/gpu_vs_transformers.py --device cpu \
      --preset tiny --decode-steps 8 --json "$WORK/vs_transformers_cpu.json"
    step vs_transformers_gemma3_cpu_dry_run 120 "$PY" benchmarks/gpu_vs_transformers.py \
      --device cpu --model gemma3 --preset tiny --decode-steps 8 \
      --json "$WORK/vs_transformers_gemma3_cpu.json"
  fi
else
  skip vs_transformers "transformers or torch not installed"
fi

# --- summary
"$PY" - "$STEPS" "$OUT_DIR" "$WORK" "$GPU" << 'EOF' | tee -a "$LOG"
import json, os, sys
steps_file, out_dir, work, gpu = sys.argv[1:5]
steps = [json.loads(line) for line in open(steps_file) if line.strip()]
summary = {"gpu": gpu == "1", "steps": steps}
for name in ("backend_info", "cuda_ops", "vs_transformers"):
    for folder in (out_dir, work):
        path = os.path.join(folder, name + ".json")
        if os.path.exists(path):
            try:
                summary[name] = json.load(open(path))
            except ValueError:
                summary[name] = "unreadable"
json.dump(summary, open(os.path.join(out_dir, "gpu_check.json"), "w"), indent=1, default=str)
bad = [s["step"] for s in steps if s["status"] not in ("ok", "skipped")]
print("gpu_check:", "all steps ok" if not bad else f"FAILED: {bad}",
      "| results in", os.path.join(out_dir, "gpu_check.json"))
sys.exit(1 if bad else 0)
EOF

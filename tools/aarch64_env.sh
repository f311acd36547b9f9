#!/usr/bin/env bash
# Builds gemma_native for 64-bit ARM Linux on an x86-64 Debian machine and prepares an emulated
# aarch64 Python to run it (docs/platforms.md):
#   tools/aarch64_env.sh DIR
# leaves
#   DIR/sysroot   an aarch64 CPython 3.11 unpacked from Debian's arm64 packages (apt-get download +
#                 dpkg -x: installing python3:arm64 through apt would replace host packages)
#   DIR/site      numpy, sentencepiece and pytest from PyPI's aarch64 wheels (pip --platform)
#   DIR/build     the cross build (Debian's g++-aarch64-linux-gnu, cmake/aarch64-linux-gnu.cmake)
#   DIR/pkg       python/gemma_native with the aarch64 extension module
#   DIR/python    runs that interpreter under qemu-aarch64; it is also sys.executable there, so
#                 the tests' subprocesses run emulated too (no binfmt_misc needed)
# pybind11 for the host Python (HOST_PYTHON, default python3) is needed for the build only.
# Needs root for apt-get (Debian/Ubuntu), and a host Python with pip, pybind11 and cmake/ninja.
# QEMU_CPU defaults to max with SVE off: the default CPU's SVE was reported to make numpy's
# OpenBLAS ~15x slower under emulation.
set -euo pipefail
DIR="$(mkdir -p "${1:?usage: tools/aarch64_env.sh DIR}" && cd "$1" && pwd)"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
HOST_PY="${HOST_PYTHON:-python3}"

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  rm -f "$DIR/.apt-updated"
fi
if [ ! -e "$DIR/.apt-updated" ]; then
  apt-get update -qq
  touch "$DIR/.apt-updated"
fi
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- the aarch64 interpreter ---
PYV=3.11
PKGS=(python$PYV-minimal libpython$PYV-minimal libpython$PYV-stdlib libpython$PYV-dev libpython$PYV
      libc6 libexpat1 zlib1g libssl3 libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libncursesw6 libtinfo6
      libreadline8 libuuid1 libgcc-s1 libstdc++6 libcrypt1 libnsl2 libtirpc3 libdb5.3 libgdbm6
      libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1)
if [ ! -x "$DIR/sysroot/usr/bin/python$PYV" ]; then
  rm -rf "$DIR/debs" "$DIR/sysroot"
  mkdir -p "$DIR/debs" "$DIR/sysroot"
  (cd "$DIR/debs" && apt-get download -qq "${PKGS[@]/%/:arm64}" 2>&1 | grep -v "unsandboxed" || true)
  for deb in "$DIR"/debs/*.deb; do dpkg -x "$deb" "$DIR/sysroot"; done
fi
cat > "$DIR/python" <<WRAP
#!/bin/sh
export PYTHONPATH="$DIR/site:$DIR/pkg\${PYTHONPATH:+:\$PYTHONPATH}"
export QEMU_CPU="\${QEMU_CPU:-max,sve=off}"
exec qemu-aarch64 -L "$DIR/sysroot" -0 "$DIR/python" "$DIR/sysroot/usr/bin/python$PYV" "\$@"
WRAP
chmod +x "$DIR/python"

# --- its packages: PyPI's aarch64 wheels, unpacked by the host's pip ---
if [ ! -d "$DIR/site/numpy" ]; then
  "$HOST_PY" -m pip install -q --target "$DIR/site" --platform manylinux2014_aarch64 \
    --only-binary=:all: --python-version $PYV --implementation cp \
    "numpy>=1.22" "sentencepiece>=0.1.99" "pytest>=7" safetensors "gguf>=0.10" "jinja2>=3"
fi

# --- the cross build (GN_AARCH64_NO_BUILD=1: only the interpreter, for tools/build_wheels.sh) ---
[ "${GN_AARCH64_NO_BUILD:-0}" = 1 ] && exit 0
PYINC="$DIR/sysroot/usr/include"
# A build folder configured from another checkout cannot be reused.
if [ -f "$DIR/build/CMakeCache.txt" ] && \
   ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$SRC" "$DIR/build/CMakeCache.txt"; then
  rm -rf "$DIR/build"
fi
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$SRC" -B "$DIR/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$SRC/cmake/aarch64-linux-gnu.cmake" \
  -Dpybind11_DIR="$("$HOST_PY" -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v "$HOST_PY")" \
  -DPython_INCLUDE_DIR="$PYINC/python$PYV" \
  -DCMAKE_CXX_FLAGS="-isystem $PYINC" \
  -DPYTHON_MODULE_EXTENSION=".cpython-${PYV/./}-aarch64-linux-gnu.so" \
  -DPYTHON_MODULE_DEBUG_POSTFIX= >/dev/null
cmake --build "$DIR/build" -j "$(nproc)"
rm -rf "$DIR/pkg"
mkdir -p "$DIR/pkg"
cp -r "$SRC/python/gemma_native" "$DIR/pkg/"
find "$DIR/pkg" \( -name "_core.*.so" -o -name __pycache__ \) -exec rm -rf {} +
cp "$DIR"/build/_core.cpython-*-aarch64-linux-gnu.so "$DIR/pkg/gemma_native/"
"$DIR/python" -c "import gemma_native as gn; i = gn.backend_info(); print('aarch64 build:', i['cpu_isa'], i['available_isas'])"

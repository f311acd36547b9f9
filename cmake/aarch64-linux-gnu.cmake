# Cross build for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu (tools/aarch64_env.sh,
# docs/platforms.md).  Python's headers for the target come from GN_AARCH64_SYSROOT (an aarch64
# Python unpacked from Debian's arm64 packages); the build machine's Python only runs CMake's
# helpers.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

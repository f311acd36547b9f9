"""The CUDA backend: the build, the SIMT emulator, the device model, GPU-only checks."""

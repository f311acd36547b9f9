"""The native ops over numpy arrays: every CPU kernel set against the numpy twins, bit-identity
across kernel sets, quantized and int8 kernels."""

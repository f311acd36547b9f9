"""Prefill and decode speed of one model next to this machine's memory bandwidth (no peers, no
op microbenchmarks): ``gemma-native bench MODEL --only limits,prefill,decode --peers none``.

    python benchmarks/decode_speed.py random:recurrentgemma-2b
    python benchmarks/decode_speed.py path/to/model.gguf --prefill 256 --decode-tokens 32

Decode is bound by memory bandwidth: every step reads every weight byte once, so
steps/s x weight bytes / bandwidth is the fraction of the ceiling reached (printed).  Extra
arguments go to gemma-native bench.
"""

import sys

from gemma_native.bench import main

if __name__ == "__main__":
    sys.exit(main([*sys.argv[1:], "--only", "limits,prefill,decode", "--peers", "none"]))

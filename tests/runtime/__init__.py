"""The engine in a process: threads, fork, signals, memory limits, CPUs without AVX."""

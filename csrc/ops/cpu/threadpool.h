// The one persistent thread pool of the CPU backend.  parallel_for runs fn over [0, n) in
// chunks on the pool's workers plus the calling thread; nested calls run inline.  The function
// pointer interface (no templates) keeps per-ISA kernel objects free of shared inline code.
#pragma once

#include <cstdint>

namespace gemma_native::ops::cpu {

using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);

// Splits [0, n) into chunks of at least min_chunk items.
void parallel_for(int64_t n, int64_t min_chunk, RangeFn fn, void* ctx);

// The chunk size parallel_for(n, min_chunk, ...) hands to the threads (dynamically, one chunk
// at a time) when it runs on more than one; kernels use it to size tasks that split evenly.
int64_t parallel_for_chunk(int64_t n, int64_t min_chunk);

// Number of threads used by parallel_for (workers + caller), at most 1024.  n <= 0 restores
// the default: the CPUs this process may use (cpu_limits.h).  The pool is rebuilt in a child
// after fork(), and the calling thread polls for interrupts between its chunks
// (ops/interrupt.h).
void set_num_threads(int n);
int num_threads();
int default_num_threads();

}  // namespace gemma_native::ops::cpu

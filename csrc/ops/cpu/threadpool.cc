#include "ops/cpu/threadpool.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "ops/cpu/cpu_limits.h"
#include "ops/interrupt.h"

namespace gemma_native::ops::cpu {
namespace {

thread_local bool t_inside_pool = false;

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> call(call_mutex_);
    stop();
    start(threads);
  }

  void run(int64_t n, int64_t chunk, RangeFn fn, void* ctx) {
    std::lock_guard<std::mutex> call(call_mutex_);
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      ctx_ = ctx;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      error_ = nullptr;
      pending_.store(static_cast<int>(workers_.size()));
      generation_.fetch_add(1);
    }
    cv_work_.notify_all();
    work(true);
    // Decode issues hundreds of short calls per token: wait for the workers by spinning a
    // little before sleeping (a futex round trip costs about as much as a small matrix).
    spin_until([&] { return pending_.load() == 0; });
    std::unique_lock<std::mutex> lk(m_);
    cv_done_.wait(lk, [&] { return pending_.load() == 0; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // A new worker starts from the current generation: had it started from 0, it would take the
  // generation already reached (by earlier calls and stop()) for new work, run an empty pass
  // and decrement pending_ for a call it is not part of -- letting a later call return while a
  // worker still runs its chunks, and, a few resizes on, leaving every worker asleep while the
  // caller waits for them (seen as a hang of tests that call set_num_threads repeatedly).
  void start(int threads) {
    quit_ = false;
    const uint64_t now = generation_.load();
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, now] { loop(now); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
      generation_.fetch_add(1);
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  // The calling thread also polls for an interrupt between its chunks (ops/interrupt.h): an
  // Interrupted thrown there is handled like a kernel's exception -- no more chunks are handed
  // out, the workers finish theirs, run() rethrows.
  void work(bool caller) {
    t_inside_pool = true;
    try {
      for (;;) {
        const int64_t b = next_.fetch_add(chunk_);
        if (b >= n_) break;
        fn_(ctx_, b, std::min(n_, b + chunk_));
        if (caller) check_interrupt();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
      next_.store(n_);
    }
    t_inside_pool = false;
  }

  // Spins (pausing) until done() or about kSpinMicros have passed.
  template <class Done>
  static void spin_until(Done done) {
    constexpr int kSpinMicros = 100;
    const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
    while (!done()) {
      for (int i = 0; i < 64; ++i) cpu_relax();
      if (std::chrono::steady_clock::now() > end) return;
    }
  }

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  void loop(uint64_t seen) {
    for (;;) {
      spin_until([&] { return generation_.load() != seen; });
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_work_.wait(lk, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (quit_) return;
      }
      work(false);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lk(m_);  // pairs with the caller's predicate check
        cv_done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex m_;
  std::condition_variable cv_work_, cv_done_;
  std::atomic<uint64_t> generation_{0};  // written under m_, read by spinning workers
  bool quit_ = false;
  std::atomic<int> pending_{0};
  RangeFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

std::mutex g_pool_mutex;
Pool* g_pool = nullptr;  // created on first use; lives until process exit

// fork() copies only the calling thread: in the child the pool's workers do not exist and its
// mutexes may be held by threads that are gone, so the child forgets the pool (leaking it on
// purpose: its destructor would join threads that are not there) and builds a new one on first
// use.
void forget_pool_after_fork() {
  g_pool = nullptr;
  new (&g_pool_mutex) std::mutex();
}

Pool& pool() {
  static std::once_flag registered;
  std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, forget_pool_after_fork); });
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  if (!g_pool) g_pool = new Pool(default_num_threads());
  return *g_pool;
}

}  // namespace

int default_num_threads() { return cpu_limits().usable(); }

void set_num_threads(int n) {
  if (n <= 0) n = default_num_threads();
  n = std::min(n, 1024);
  pool().resize(n);
}

int num_threads() { return pool().threads(); }

void parallel_for(int64_t n, int64_t min_chunk, RangeFn fn, void* ctx) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  Pool& p = pool();
  const int threads = p.threads();
  if (t_inside_pool || threads == 1 || n <= min_chunk) {
    if (t_inside_pool || !interrupt_polling()) {
      fn(ctx, 0, n);
      return;
    }
    // One thread, interruptible: in slices, polling between them.
    const int64_t slice = std::max(min_chunk, (n + 15) / 16);
    for (int64_t b = 0; b < n; b += slice) {
      fn(ctx, b, std::min(n, b + slice));
      check_interrupt();
    }
    return;
  }
  p.run(n, parallel_for_chunk(n, min_chunk), fn, ctx);
}

int64_t parallel_for_chunk(int64_t n, int64_t min_chunk) {
  // About four chunks per thread balances uneven work without much scheduling overhead.
  const int64_t threads = pool().threads();
  return std::max({int64_t{1}, min_chunk, (n + 4 * threads - 1) / (4 * threads)});
}

}  // namespace gemma_native::ops::cpu

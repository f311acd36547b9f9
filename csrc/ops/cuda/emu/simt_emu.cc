// The SIMT emulator's runtime: launches, barriers, warp exchange and shared memory (see
// simt_emu.h for the model).  Two ways to run the CUDA threads of a block:
// - threads: one std::thread per CUDA thread; barriers are a mutex + condition variable, so
//   ThreadSanitizer sees every happens-before edge a CUDA barrier creates and nothing more.
//   Always used in sanitizer builds, and when GEMMA_NATIVE_EMU_MODE=threads.
// - fibers (the default otherwise): the CUDA threads of a block are fibers on the calling
//   thread, switched at barriers in a fixed round-robin order (a dozen instructions per switch
//   on x86-64, ucontext elsewhere).  Far faster than OS threads on a 2-core machine,
//   deterministic, and it detects a deadlock (threads waiting at barriers nobody else will
//   reach) at once instead of by a timeout.
// The same kernel results come out of both (tests/cuda/test_cuda_emu_tools.py checks it).
#include "ops/cuda/emu/simt_emu.h"

#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define GN_EMU_SANITIZED 1
#else
#define GN_EMU_SANITIZED 0
#endif

namespace gn_emu {
namespace {

constexpr size_t kStaticSmem = 48 * 1024;   // CUDA's static shared memory limit per block
constexpr size_t kDynamicSmem = 48 * 1024;  // dynamic limit without the opt-in attribute
constexpr auto kWaitLimit = std::chrono::seconds(60);
constexpr size_t kFiberStack = 256 * 1024;  // per CUDA thread, with a guard page below

struct Aborted {};  // unwinds a CUDA thread after a fault anywhere in the launch

// ---- fiber contexts ----
#if defined(__x86_64__)
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack,
// stores the stack pointer in *save, loads `load` and restores the same from there.
extern "C" void gn_emu_switch(void** save, void* load);
asm(R"(
    .text
    .p2align 4
    .globl gn_emu_switch
    .hidden gn_emu_switch
    .type gn_emu_switch, @function
gn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $16, %rsp
    stmxcsr 8(%rsp)
    fnstcw 12(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr 8(%rsp)
    fldcw 12(%rsp)
    addq $16, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gn_emu_switch, .-gn_emu_switch
)");

struct Context {
  void* sp = nullptr;
};

// A new context whose first switch-in calls entry() on the given stack (entry never returns).
void context_init(Context& c, unsigned char* stack, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t{15};
  auto* p = reinterpret_cast<uint64_t*>(top);
  *--p = 0;                                   // entry's (never used) return address slot
  *--p = reinterpret_cast<uint64_t>(entry);   // popped by gn_emu_switch's ret
  for (int i = 0; i < 6; ++i) *--p = 0;       // rbp rbx r12 r13 r14 r15
  p -= 2;                                     // MXCSR and x87 control word: the current ones
  uint32_t mxcsr;
  uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  std::memcpy(reinterpret_cast<char*>(p) + 8, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(p) + 12, &fcw, 2);
  c.sp = p;
}

void context_switch(Context& from, Context& to) { gn_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};

void context_init(Context& c, unsigned char* stack, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}

void context_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

struct Launch;
struct Fiber;

thread_local Launch* tl_launch = nullptr;
thread_local int tl_tid = 0;
thread_local size_t tl_cursor = 0;
thread_local Fiber* tl_fiber = nullptr;  // fibers mode: the running fiber

// Fibers mode: the scheduler's context and one fiber per CUDA thread.
struct Fiber {
  Context ctx;
  unsigned char* stack = nullptr;  // kFiberStack bytes above a guard page
  int tid = 0;
  bool done = false;
  const void* waiting_on = nullptr;  // the barrier it waits at
  uint64_t wait_generation = 0;
  size_t cursor = 0;
};

// Fiber stacks are kept per OS thread across launches (mmap + guard page each).
struct StackPool {
  std::vector<unsigned char*> free;
  ~StackPool() {
    for (unsigned char* p : free) munmap(p - 4096, kFiberStack + 4096);
  }
  unsigned char* get() {
    if (!free.empty()) {
      unsigned char* p = free.back();
      free.pop_back();
      return p;
    }
    void* m = mmap(nullptr, kFiberStack + 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw KernelFault("emulator: cannot map a fiber stack");
    mprotect(m, 4096, PROT_NONE);
    return static_cast<unsigned char*>(m) + 4096;
  }
  void put(unsigned char* p) { free.push_back(p); }
};
thread_local StackPool tl_stacks;

// A barrier over a changing set of participants: a CUDA thread that has returned no longer
// counts, as on the hardware.  The last arriver runs the optional completion before anyone
// is released.
class Barrier {
 public:
  explicit Barrier(Launch* l) : launch_(l) {}
  void reset(int n) {
    participants_ = n;
    arrived_ = 0;
  }
  void wait(const std::function<void()>& completion = nullptr);
  void leave();
  void wake() {
    std::lock_guard<std::mutex> lk(m_);
    cv_.notify_all();
  }
  uint64_t generation() const { return generation_; }

 protected:
  // Counts the caller in and returns once the phase is over.  Threads mode: with m_ held in lk.
  void arrive(std::unique_lock<std::mutex>* lk, const std::function<void()>& completion);
  bool fibers() const;

  Launch* launch_;
  std::mutex m_;
  std::condition_variable cv_;
  int participants_ = 0;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

// A warp: a barrier over its live lanes plus double-buffered exchange slots for shuffles
// (exchange k uses buffer k % 2: a lane can only write a buffer again after every lane has
// passed the next exchange's barrier, i.e. has read this one).
class Warp : public Barrier {
 public:
  Warp(Launch* l, int lanes) : Barrier(l), lanes_(lanes) {}
  void reset_block() {
    reset(lanes_);
    live_ = lanes_ == 32 ? 0xffffffffu : ((1u << lanes_) - 1u);
    for (auto& c : count_) c = 0;
  }
  void leave_lane(int lane);
  void sync(unsigned mask);
  uint64_t exchange(int lane, unsigned mask, uint64_t bits, int src);

 private:
  std::string mask_problem(unsigned mask) const;
  int lanes_;
  unsigned live_ = 0;
  uint64_t slots_[2][32] = {};
  uint32_t count_[32] = {};
};

struct Launch {
  const char* name = "";
  bool fibers = false;
  dim3 grid, block;
  size_t dyn_bytes = 0;
  int threads = 0;
  std::atomic<bool> aborted{false};
  std::mutex error_mutex;
  std::string error;
  Barrier block_barrier{this};
  Barrier grid_barrier{this};
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<unsigned char> smem;
  uint3 current_block{0, 0, 0};
  int64_t blocks_done = 0;
  // fibers mode
  Context scheduler;
  std::vector<Fiber> fiber;
  const std::function<void()>* body = nullptr;
};

bool Barrier::fibers() const { return launch_->fibers; }

std::string where() {
  return std::string("kernel ") + tl_launch->name + ", block (" + std::to_string(blockIdx.x) +
         "," + std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + "), thread (" +
         std::to_string(threadIdx.x) + "," + std::to_string(threadIdx.y) + "," +
         std::to_string(threadIdx.z) + ")";
}

void check_aborted() {
  if (tl_launch->aborted.load(std::memory_order_acquire)) throw Aborted{};
}

// Fibers mode: park the running fiber until `b` moves past `generation`.
void fiber_wait(const Barrier* b, uint64_t generation) {
  Fiber* f = tl_fiber;
  f->waiting_on = b;
  f->wait_generation = generation;
  f->cursor = tl_cursor;
  context_switch(f->ctx, tl_launch->scheduler);
  check_aborted();
}

void Barrier::arrive(std::unique_lock<std::mutex>* lk, const std::function<void()>& completion) {
  if (launch_->aborted.load(std::memory_order_acquire)) throw Aborted{};
  const uint64_t gen = generation_;
  if (++arrived_ >= participants_) {
    if (completion) completion();
    arrived_ = 0;
    ++generation_;
    if (!fibers()) cv_.notify_all();
    return;
  }
  if (fibers()) {
    fiber_wait(this, gen);
    return;
  }
  while (generation_ == gen) {
    if (cv_.wait_for(*lk, kWaitLimit) == std::cv_status::timeout && generation_ == gen) {
      lk->unlock();
      fault("barrier wait of over " + std::to_string(kWaitLimit.count()) +
            " s: a thread never reached the matching __syncthreads/__syncwarp (deadlock)");
    }
    if (launch_->aborted.load(std::memory_order_acquire)) throw Aborted{};
  }
}

void Barrier::wait(const std::function<void()>& completion) {
  if (fibers()) {
    arrive(nullptr, completion);
    return;
  }
  std::unique_lock<std::mutex> lk(m_);
  arrive(&lk, completion);
}

void Barrier::leave() {
  std::unique_lock<std::mutex> lk(m_, std::defer_lock);
  if (!fibers()) lk.lock();
  --participants_;
  if (participants_ > 0 && arrived_ >= participants_) {
    arrived_ = 0;
    ++generation_;
    if (!fibers()) cv_.notify_all();
  }
}

std::string Warp::mask_problem(unsigned mask) const {
  if (mask == live_) return "";
  char buf[96];
  snprintf(buf, sizeof buf, "warp operation with mask 0x%08x but the live lanes are 0x%08x", mask,
           live_);
  return buf;
}

void Warp::leave_lane(int lane) {
  {
    std::unique_lock<std::mutex> lk(m_, std::defer_lock);
    if (!fibers()) lk.lock();
    live_ &= ~(1u << lane);
  }
  leave();
}

void Warp::sync(unsigned mask) {
  std::unique_lock<std::mutex> lk(m_, std::defer_lock);
  if (!fibers()) lk.lock();
  const std::string bad = mask_problem(mask);
  if (!bad.empty()) {
    if (lk.owns_lock()) lk.unlock();
    fault(bad);
  }
  arrive(fibers() ? nullptr : &lk, nullptr);
}

uint64_t Warp::exchange(int lane, unsigned mask, uint64_t bits, int src) {
  std::unique_lock<std::mutex> lk(m_, std::defer_lock);
  if (!fibers()) lk.lock();
  std::string bad = mask_problem(mask);
  if (bad.empty() && (src < 0 || src >= 32 || !(live_ >> src & 1u)))
    bad = "shuffle reads lane " + std::to_string(src) + ", which is not a live lane of the warp";
  if (!bad.empty()) {
    if (lk.owns_lock()) lk.unlock();
    fault(bad);
  }
  const uint32_t k = count_[lane]++ & 1u;
  slots_[k][lane] = bits;
  arrive(fibers() ? nullptr : &lk, nullptr);  // every lane has written its slot
  return slots_[k][src];
}

void prepare_block(Launch& L) {
  // The next block's state; runs while no CUDA thread of the launch is inside the kernel.
  const dim3 g = L.grid;
  const int64_t b = L.blocks_done++;
  L.current_block = uint3{static_cast<unsigned>(b % g.x), static_cast<unsigned>(b / g.x % g.y),
                          static_cast<unsigned>(b / g.x / g.y)};
  L.block_barrier.reset(L.threads);
  for (auto& w : L.warps) w->reset_block();
  memset(L.smem.data(), 0xFF, L.smem.size());  // NaN poison
}

uint3 thread_index(const dim3& bd, int tid) {
  return uint3{tid % bd.x, tid / bd.x % bd.y, tid / (bd.x * bd.y)};
}

// Runs the kernel body for one CUDA thread of the current block; false if the launch failed.
bool run_body(Launch& L, int tid) {
  try {
    (*L.body)();
  } catch (const Aborted&) {
    return false;
  } catch (const KernelFault&) {
    return false;
  } catch (const std::exception& e) {
    try {
      fault(std::string("exception in kernel: ") + e.what());
    } catch (const KernelFault&) {
    }
    return false;
  }
  L.block_barrier.leave();
  L.warps[tid / 32]->leave_lane(tid % 32);
  return true;
}

// ---- threads mode ----

void thread_main(Launch& L, int tid) {
  tl_launch = &L;
  tl_tid = tid;
  threadIdx = thread_index(L.block, tid);
  blockDim = L.block;
  gridDim = L.grid;
  const int64_t blocks = static_cast<int64_t>(L.grid.x) * L.grid.y * L.grid.z;
  try {
    for (int64_t b = 0; b < blocks; ++b) {
      L.grid_barrier.wait([&L] { prepare_block(L); });
      blockIdx = L.current_block;
      tl_cursor = 0;
      if (!run_body(L, tid)) return;
    }
  } catch (const Aborted&) {
    // The launch failed and the fault is recorded.
  }
}

void run_threads(Launch& L) {
  L.grid_barrier.reset(L.threads);
  std::vector<std::thread> pool;
  pool.reserve(L.threads);
  for (int t = 0; t < L.threads; ++t) pool.emplace_back(thread_main, std::ref(L), t);
  for (auto& t : pool) t.join();
}

// ---- fibers mode ----

[[noreturn]] void fiber_entry() {
  Fiber* f = tl_fiber;
  run_body(*tl_launch, f->tid);
  f->done = true;
  f->waiting_on = nullptr;
  context_switch(f->ctx, tl_launch->scheduler);  // never resumed: the fiber is done
  std::abort();
}

void enter(Launch& L, Fiber& f) {
  tl_fiber = &f;
  tl_tid = f.tid;
  threadIdx = thread_index(L.block, f.tid);
  tl_cursor = f.cursor;
  context_switch(L.scheduler, f.ctx);
  tl_fiber = nullptr;
}

bool runnable(const Launch& L, const Fiber& f) {
  if (f.done) return false;
  if (f.waiting_on == nullptr || L.aborted.load()) return true;
  return static_cast<const Barrier*>(f.waiting_on)->generation() != f.wait_generation;
}

void run_fibers(Launch& L) {
  // Save and restore the caller's CUDA-thread variables (a launch from inside a fiber is not
  // supported, but a launch from a thread that ran one before is).
  Launch* const saved_launch = tl_launch;
  tl_launch = &L;
  blockDim = L.block;
  gridDim = L.grid;
  L.fiber.resize(L.threads);
  for (int t = 0; t < L.threads; ++t) {
    L.fiber[t].tid = t;
    L.fiber[t].stack = tl_stacks.get();
  }
  const int64_t blocks = static_cast<int64_t>(L.grid.x) * L.grid.y * L.grid.z;
  for (int64_t b = 0; b < blocks && !L.aborted.load(); ++b) {
    prepare_block(L);
    blockIdx = L.current_block;
    for (Fiber& f : L.fiber) {
      f.done = false;
      f.waiting_on = nullptr;
      f.cursor = 0;
      context_init(f.ctx, f.stack, kFiberStack, fiber_entry);
    }
    for (;;) {
      bool progressed = false, all_done = true;
      for (Fiber& f : L.fiber) {
        if (f.done) continue;
        all_done = false;
        if (!runnable(L, f)) continue;
        f.waiting_on = nullptr;
        enter(L, f);
        progressed = true;
      }
      if (all_done) break;
      if (!progressed) {
        // Every live thread waits at a barrier that cannot complete: report it from the
        // first waiting thread, then let every fiber unwind.
        Fiber& f = *std::find_if(L.fiber.begin(), L.fiber.end(),
                                 [](const Fiber& x) { return !x.done; });
        tl_tid = f.tid;
        threadIdx = thread_index(L.block, f.tid);
        {
          std::lock_guard<std::mutex> lk(L.error_mutex);
          if (L.error.empty())
            L.error = where() + ": deadlock: the live threads of the block wait at barriers "
                                "(__syncthreads / warp operations) that the others never reach";
        }
        L.aborted.store(true);
      }
    }
  }
  for (Fiber& f : L.fiber) tl_stacks.put(f.stack);
  tl_launch = saved_launch;
}

}  // namespace

[[noreturn]] void fault(const std::string& what) {
  Launch* L = tl_launch;
  if (L == nullptr) throw KernelFault(what);
  {
    std::lock_guard<std::mutex> lk(L->error_mutex);
    if (L->error.empty()) L->error = where() + ": " + what;
  }
  L->aborted.store(true, std::memory_order_release);
  if (!L->fibers) {
    L->block_barrier.wake();
    L->grid_barrier.wake();
    for (auto& w : L->warps) w->wake();
  }
  throw KernelFault(what);
}

void sync_block() {
  check_aborted();
  tl_launch->block_barrier.wait();
}

void sync_warp(unsigned mask) {
  check_aborted();
  tl_launch->warps[tl_tid / 32]->sync(mask);
}

int lane_id() { return tl_tid % 32; }

uint64_t exchange(unsigned mask, uint64_t bits, int src_lane, bool src_valid) {
  check_aborted();
  Warp& w = *tl_launch->warps[tl_tid / 32];
  return w.exchange(tl_tid % 32, mask, bits, src_valid ? src_lane : -1);
}

unsigned char* shared_static(size_t bytes, size_t align, const char* name) {
  Launch& L = *tl_launch;
  const size_t a = align < 16 ? 16 : align;
  const size_t at = (tl_cursor + a - 1) / a * a;
  if (at + bytes > kStaticSmem)
    fault(std::string("static shared memory overflow at '") + name + "': " +
          std::to_string(at + bytes) + " bytes > " + std::to_string(kStaticSmem));
  tl_cursor = at + bytes;
  return L.smem.data() + at;
}

unsigned char* shared_dynamic(size_t* bytes) {
  Launch& L = *tl_launch;
  *bytes = L.dyn_bytes;
  return L.smem.data() + kStaticSmem;
}

const char* mode() {
  if (GN_EMU_SANITIZED) return "threads";
  const char* m = std::getenv("GEMMA_NATIVE_EMU_MODE");
  return (m != nullptr && std::string(m) == "threads") ? "threads" : "fibers";
}

void run(const char* name, dim3 grid, dim3 block, size_t dyn_smem,
         const std::function<void()>& body) {
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  const auto bad = [&](const std::string& why) {
    throw KernelFault(std::string("launch of ") + name + ": " + why);
  };
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) bad("empty grid");
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) bad("grid too large");
  if (threads == 0 || threads > 1024 || block.z > 64) bad("invalid block shape");
  if (dyn_smem > kDynamicSmem)
    bad("dynamic shared memory " + std::to_string(dyn_smem) + " bytes > 48 KiB");

  Launch L;
  L.name = name;
  L.fibers = std::string(mode()) == "fibers";
  L.grid = grid;
  L.block = block;
  L.dyn_bytes = dyn_smem;
  L.threads = static_cast<int>(threads);
  L.body = &body;
  L.smem.assign(kStaticSmem + dyn_smem, 0xFF);
  for (int w = 0; w * 32 < L.threads; ++w)
    L.warps.push_back(std::make_unique<Warp>(&L, std::min(32, L.threads - w * 32)));

  if (L.fibers) {
    run_fibers(L);
  } else {
    run_threads(L);
  }
  if (L.aborted.load()) throw KernelFault(L.error);
}

}  // namespace gn_emu

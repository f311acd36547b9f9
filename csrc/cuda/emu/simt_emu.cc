// The SIMT emulator's runtime: launches, barriers, warp exchange and shared memory (see
// simt_emu.h for the model).  Plain mutexes and condition variables throughout, so that
// ThreadSanitizer sees every happens-before edge a CUDA barrier would create and nothing more.
#include "cuda/emu/simt_emu.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace gn_emu {
namespace {

constexpr size_t kStaticSmem = 48 * 1024;   // CUDA's static shared memory limit per block
constexpr size_t kDynamicSmem = 48 * 1024;  // dynamic limit without the opt-in attribute
constexpr auto kWaitLimit = std::chrono::seconds(60);

struct Aborted {};  // unwinds a thread after a fault anywhere in the launch

struct Launch;

// A barrier for a changing set of participants: a thread that leaves no longer counts, as a
// CUDA thread that has returned no longer counts at __syncthreads.  The last arriver runs the
// optional completion under the lock before anyone is released.
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
  std::mutex& mutex() { return m_; }

  // Called with m_ held: counts this thread in and waits for the phase to end.
  void arrive_locked(std::unique_lock<std::mutex>& lk, const std::function<void()>& completion);

 protected:
  Launch* launch_;
  std::mutex m_;
  std::condition_variable cv_;
  int participants_ = 0;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

// A warp: a barrier over its live lanes plus the exchange slots for shuffles.
class Warp : public Barrier {
 public:
  Warp(Launch* l, int lanes) : Barrier(l), lanes_(lanes) {}
  void reset_block() {
    reset(lanes_);
    live_ = lanes_ == 32 ? 0xffffffffu : ((1u << lanes_) - 1u);
  }
  void leave_lane(int lane) {
    {
      std::lock_guard<std::mutex> lk(m_);
      live_ &= ~(1u << lane);
    }
    leave();
  }
  void sync(unsigned mask);
  uint64_t exchange(int lane, unsigned mask, uint64_t bits, int src);

 private:
  std::string mask_problem(unsigned mask) const;
  int lanes_;
  unsigned live_ = 0;
  uint64_t slots_[32] = {};
};

struct Launch {
  const char* name = "";
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
};

thread_local Launch* tl_launch = nullptr;
thread_local int tl_tid = 0;
thread_local size_t tl_cursor = 0;

std::string where() {
  return std::string("kernel ") + tl_launch->name + ", block (" + std::to_string(blockIdx.x) +
         "," + std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + "), thread (" +
         std::to_string(threadIdx.x) + "," + std::to_string(threadIdx.y) + "," +
         std::to_string(threadIdx.z) + ")";
}

void check_aborted() {
  if (tl_launch->aborted.load(std::memory_order_acquire)) throw Aborted{};
}

void Barrier::arrive_locked(std::unique_lock<std::mutex>& lk,
                            const std::function<void()>& completion) {
  if (launch_->aborted.load(std::memory_order_acquire)) throw Aborted{};
  const uint64_t gen = generation_;
  if (++arrived_ >= participants_) {
    if (completion) completion();
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  while (generation_ == gen) {
    if (cv_.wait_for(lk, kWaitLimit) == std::cv_status::timeout && generation_ == gen) {
      lk.unlock();
      fault("barrier wait of over " + std::to_string(kWaitLimit.count()) +
            " s: a thread never reached the matching __syncthreads/__syncwarp (deadlock)");
    }
    if (launch_->aborted.load(std::memory_order_acquire)) throw Aborted{};
  }
}

void Barrier::wait(const std::function<void()>& completion) {
  std::unique_lock<std::mutex> lk(m_);
  arrive_locked(lk, completion);
}

void Barrier::leave() {
  std::lock_guard<std::mutex> lk(m_);
  --participants_;
  if (participants_ > 0 && arrived_ >= participants_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  }
}

std::string Warp::mask_problem(unsigned mask) const {
  if (mask == live_) return "";
  char buf[96];
  snprintf(buf, sizeof buf, "warp operation with mask 0x%08x but the live lanes are 0x%08x", mask,
           live_);
  return buf;
}

void Warp::sync(unsigned mask) {
  std::unique_lock<std::mutex> lk(m_);
  const std::string bad = mask_problem(mask);
  if (!bad.empty()) {
    lk.unlock();
    fault(bad);
  }
  arrive_locked(lk, nullptr);
}

uint64_t Warp::exchange(int lane, unsigned mask, uint64_t bits, int src) {
  std::unique_lock<std::mutex> lk(m_);
  std::string bad = mask_problem(mask);
  if (bad.empty() && (src < 0 || src >= 32 || !(live_ >> src & 1u)))
    bad = "shuffle reads lane " + std::to_string(src) + ", which is not a live lane of the warp";
  if (!bad.empty()) {
    lk.unlock();
    fault(bad);
  }
  slots_[lane] = bits;
  arrive_locked(lk, nullptr);  // every lane has written its slot
  const uint64_t r = slots_[src];
  arrive_locked(lk, nullptr);  // every lane has read before any slot is reused
  return r;
}

void prepare_block(Launch& L) {
  // Runs under the grid barrier's lock while every thread waits: the next block's state.
  const dim3 g = L.grid;
  const int64_t b = L.blocks_done++;
  L.current_block = uint3{static_cast<unsigned>(b % g.x), static_cast<unsigned>(b / g.x % g.y),
                          static_cast<unsigned>(b / g.x / g.y)};
  L.block_barrier.reset(L.threads);
  for (auto& w : L.warps) w->reset_block();
  memset(L.smem.data(), 0xFF, L.smem.size());  // NaN poison
}

void thread_main(Launch& L, int tid, const std::function<void()>& body) {
  tl_launch = &L;
  tl_tid = tid;
  const dim3 bd = L.block;
  threadIdx = uint3{tid % bd.x, tid / bd.x % bd.y, tid / (bd.x * bd.y)};
  blockDim = bd;
  gridDim = L.grid;
  Warp& warp = *L.warps[tid / 32];
  const int64_t blocks = static_cast<int64_t>(L.grid.x) * L.grid.y * L.grid.z;
  try {
    for (int64_t b = 0; b < blocks; ++b) {
      L.grid_barrier.wait([&L] { prepare_block(L); });
      blockIdx = L.current_block;
      tl_cursor = 0;
      try {
        body();
      } catch (const Aborted&) {
        throw;
      } catch (const KernelFault&) {
        throw Aborted{};
      } catch (const std::exception& e) {
        try {
          fault(std::string("exception in kernel: ") + e.what());
        } catch (const KernelFault&) {
        }
        throw Aborted{};
      }
      L.block_barrier.leave();
      warp.leave_lane(tid % 32);
    }
  } catch (const Aborted&) {
    // The launch failed; the fault is recorded.  Leave so that nobody waits for this thread.
  }
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
  L->block_barrier.wake();
  L->grid_barrier.wake();
  for (auto& w : L->warps) w->wake();
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
  size_t at = (tl_cursor + align - 1) / align * align;
  if (align < 16) at = (tl_cursor + 15) / 16 * 16;
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
  L.grid = grid;
  L.block = block;
  L.dyn_bytes = dyn_smem;
  L.threads = static_cast<int>(threads);
  L.smem.assign(kStaticSmem + dyn_smem, 0xFF);
  L.grid_barrier.reset(L.threads);
  for (int w = 0; w * 32 < L.threads; ++w)
    L.warps.push_back(std::make_unique<Warp>(&L, std::min(32, L.threads - w * 32)));

  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < L.threads; ++t) pool.emplace_back(thread_main, std::ref(L), t, std::cref(body));
  for (auto& t : pool) t.join();
  if (L.aborted.load()) throw KernelFault(L.error);
}

}  // namespace gn_emu

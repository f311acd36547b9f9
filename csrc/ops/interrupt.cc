#include "ops/interrupt.h"

namespace gemma_native::ops {
namespace {

using Clock = std::chrono::steady_clock;

thread_local PollFn t_poll = nullptr;
thread_local bool t_enabled = false;
thread_local Clock::time_point t_last;

}  // namespace

PollScope::PollScope(PollFn fn) : prev_(t_poll) {
  t_poll = fn;
  t_last = Clock::now();
}

PollScope::~PollScope() { t_poll = prev_; }

InterruptibleScope::InterruptibleScope(bool on) : prev_(t_enabled) { t_enabled = on; }

InterruptibleScope::~InterruptibleScope() { t_enabled = prev_; }

bool interrupt_polling() { return t_enabled && t_poll != nullptr; }

void check_interrupt() {
  if (!t_enabled || t_poll == nullptr) return;
  const Clock::time_point now = Clock::now();
  if (now - t_last < kPollInterval) return;
  t_last = now;
  if (t_poll()) throw Interrupted();
}

}  // namespace gemma_native::ops

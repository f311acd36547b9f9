// Cooperative interruption of long computations (Ctrl-C during a long prefill).
//
// The Python binding installs a poll function on the calling thread for the duration of a
// model's forward (PollScope); the model enables polling only around work it can undo
// (InterruptibleScope: it snapshots the states first and restores them when anything throws).
// parallel_for and the models' layer loops call check_interrupt(), which runs the poll at most
// every kPollInterval and throws Interrupted when the poll reports a pending interrupt; the
// binding then raises the Python exception the poll left (KeyboardInterrupt).  Worker threads
// never poll: the thread that called in does, between its own chunks.
#pragma once

#include <chrono>
#include <exception>

namespace gemma_native::ops {

// Thrown by check_interrupt().  Not a gemma_native::Error: it is not a user error, and the
// binding turns it back into the Python exception that the poll found pending.
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

// True when an interrupt is pending (the poll may run Python signal handlers).
using PollFn = bool (*)();

constexpr std::chrono::milliseconds kPollInterval{50};

// Installs fn as this thread's poll function while the scope lives (restores the previous one).
class PollScope {
 public:
  explicit PollScope(PollFn fn);
  ~PollScope();
  PollScope(const PollScope&) = delete;
  PollScope& operator=(const PollScope&) = delete;

 private:
  PollFn prev_;
};

// Allows (on = true) or forbids polling on this thread while the scope lives.
class InterruptibleScope {
 public:
  explicit InterruptibleScope(bool on);
  ~InterruptibleScope();
  InterruptibleScope(const InterruptibleScope&) = delete;
  InterruptibleScope& operator=(const InterruptibleScope&) = delete;

 private:
  bool prev_;
};

// Whether check_interrupt() can throw on this thread now (a poll is installed and enabled).
bool interrupt_polling();

// Runs the poll if polling is on and kPollInterval has passed since the last one; throws
// Interrupted when it reports an interrupt.
void check_interrupt();

}  // namespace gemma_native::ops

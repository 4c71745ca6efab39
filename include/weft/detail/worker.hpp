// What inline code (Task, gathers) needs of the executor: the current worker, its deque, its
// counters, and the cheap "is anyone asleep?" check after publishing work.
// The loop, stealing and parking live in runtime/worker.cpp and runtime/parking.cpp.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/deque.hpp"

namespace weft::detail {

class Scheduler;
struct InlineRun;

// Written only by the owning worker (a relaxed load and store, no locked instruction);
// read relaxed by Runtime::stats() from any thread.
struct WorkerCounters {
  std::atomic<std::uint64_t> tasks_run{0};      // tasks taken from a queue and started
  std::atomic<std::uint64_t> tasks_spawned{0};  // tasks pushed onto this worker's deque
  std::atomic<std::uint64_t> steals{0};
  std::atomic<std::uint64_t> steal_attempts{0};
  std::atomic<std::uint64_t> parks{0};
};

inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// Published on the shared idle state; read on every spawn, so it sits on its own cache line
// and is written only when a worker parks or is woken.
struct alignas(kCacheLine) IdleCount {
  detail::atomic<std::uint32_t> sleepers{0};
};

struct alignas(kCacheLine) Worker {
  Worker(Scheduler& s, unsigned i, IdleCount& idle_count) : scheduler(s), index(i), idle(idle_count) {}

  // Pushes a child a fork (gather, task group) spawned onto this worker's deque and offers
  // it to idle workers. Owner only.
  inline void push_child(void* frame) noexcept;
  // Pops the bottom item back if it is the fork's own next child: the fork's children end at
  // `expected_bottom`, so anything else there (or an empty deque) returns null. Owner only.
  inline void* pop_own_child(std::int64_t expected_bottom) noexcept;

  WorkStealingDeque<void*> deque;
  Scheduler& scheduler;
  const unsigned index;
  IdleCount& idle;
  // Forks (gathers, task groups) started on this worker whose children are still being run
  // inline, innermost first (see InlineRun in join_state.hpp). Owner only.
  InlineRun* open_runs = nullptr;
  WorkerCounters counters;
  std::uint64_t rng_state = 0;   // victim selection (xorshift)
  std::uint32_t tick = 0;        // tasks taken since start, for the injection-queue fairness check
  bool last_from_injection = false;  // the search's last find came from the injection queue
  // The futex word this worker sleeps on (parking.cpp).
  alignas(kCacheLine) detail::atomic<std::uint32_t> park_state{0};
};

inline thread_local Worker* tl_worker = nullptr;

// True when the asymmetric barrier (membarrier) is available; otherwise the publisher pays a
// full fence. Set once before any worker starts.
extern bool g_publisher_needs_fence;

void wake_one_sleeper(Worker& publisher) noexcept;

// Call after making work visible (a deque push). Pairs with the parking protocol in
// parking.cpp: a worker about to sleep increments `sleepers`, issues a process-wide barrier
// and rescans every deque; so either it sees our work, or we see it counted here.
inline void notify_work_published(Worker& w) noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);  // keep the check after the push
  if (g_publisher_needs_fence) [[unlikely]]
    detail::thread_fence(std::memory_order_seq_cst);
  // Relaxed: ordering comes from the barrier described above.
  if (w.idle.sleepers.load(std::memory_order_relaxed) != 0) [[unlikely]] wake_one_sleeper(w);
}

void Worker::push_child(void* frame) noexcept {
  deque.push(frame);
  bump(counters.tasks_spawned);
  notify_work_published(*this);
}

void* Worker::pop_own_child(std::int64_t expected_bottom) noexcept {
  if (deque.bottom_index() != expected_bottom) return nullptr;
  void* child = deque.pop();
  if (child != nullptr) bump(counters.tasks_run);
  return child;
}

// Pushes a ready coroutine onto the current worker's deque, or hands it to the scheduler's
// injection queue when called from outside a worker.
void schedule(Scheduler& s, std::coroutine_handle<> h);

}  // namespace weft::detail

// The timer service: one per Runtime, a thread that runs short callbacks at given times on the
// steady clock. Sleeps, timeouts and timed gathers are built on it; so can any primitive that
// needs to wake up at a deadline.
//
//   struct Alarm : detail::TimerNode { ... };      // the node lives in the caller's frame
//   alarm.fire = [](detail::TimerNode* n) noexcept { /* short: schedule a task, cancel a scope */ };
//   timers.arm(alarm, deadline);                   // from any thread
//   ...
//   timers.disarm(alarm);                          // before `alarm` dies: true if it never ran
//
// Protocol and invariants.
//   - A node is armed (in the heap) from arm() until either disarm() removes it or the timer
//     thread takes it out to run it. The heap, every node's `heap_index` and `running_` are
//     guarded by the service's mutex; nothing else of a node is touched by the service.
//   - The timer thread takes one due node at a time: under the lock it removes it from the
//     heap and records it as `running_`; it runs `fire` without the lock; it clears `running_`
//     under the lock. So at any time a node is armed, running, or idle, and only the timer
//     thread runs callbacks, one after another, in deadline order.
//   - disarm() returns true when it removed the node before it ran. Otherwise it returns false,
//     after the callback has finished if it was running (it waits, like std::stop_callback's
//     destructor): once disarm() returns, the service holds no reference to the node and its
//     owner may free it. A callback may disarm itself (no wait) and may arm or disarm other
//     nodes; it must not wait for something that needs the timer thread.
//   - The timer thread sleeps (condition variable, no timeout when nothing is armed) until the
//     earliest deadline; arm() wakes it only when the new node is earlier than the time it
//     sleeps until. A disarmed earliest node costs the thread at most one needless wake-up at
//     the old deadline. An idle runtime's timer thread never wakes; it is started by the first
//     arm(), so a runtime that never uses timers has no timer thread at all.
//
// Structure and costs. A 4-ary min-heap of (deadline, node) entries in one array, each node
// holding its index: arm and disarm are O(log4 n) under one mutex (n = armed timers: 10
// levels for a million), firing the earliest is O(log4 n), reading it O(1). Comparisons stay
// in the array (an entry carries its deadline); each move writes the moved node's index. The
// four children of an entry are contiguous (64 bytes, at most two cache lines), so a
// sift-down level costs a few cached comparisons and one node write; a 4-ary heap has half the levels, and so half
// the node writes, of a binary one. The array costs 16 bytes per armed timer, grows by
// doubling (amortised: no allocation per timer in steady state) and shrinks when it is under
// a quarter full, so that a burst of timers does not pin its memory. A hierarchical timing
// wheel would make arm and disarm O(1) but rounds deadlines to its tick; the heap fires each
// timer at its exact deadline (lateness is only the thread's wake-up: tens of microseconds,
// less with the 1 us timer slack the thread asks for).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace weft::detail {

class Scheduler;

using TimerClock = std::chrono::steady_clock;
using TimerTimePoint = TimerClock::time_point;

// A timer, owned by whoever arms it (intrusive: arming allocates no node).
struct TimerNode {
  static constexpr std::size_t kNotArmed = std::numeric_limits<std::size_t>::max();

  // Run once on the timer thread when the deadline has passed, unless disarmed first. Must be
  // short and must not throw: it delays every later timer.
  void (*fire)(TimerNode* self) noexcept = nullptr;
  // Guarded by the service's mutex: the node's heap position, kNotArmed when not in the heap.
  std::size_t heap_index = kNotArmed;
};

class TimerService {
 public:
  // `thread_name` is the timer thread's name (Linux keeps 15 characters).
  explicit TimerService(std::string thread_name);
  // Stops and joins the thread. No node may still be armed (their owners are tasks, and the
  // runtime ends every task before its timer service).
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  // Arms `node` (which must not be armed) to fire at `when`; from any thread. A deadline that
  // has already passed fires as soon as the timer thread gets to it; TimerTimePoint::max()
  // never fires (the node waits to be disarmed). Throws std::bad_alloc when the heap cannot
  // grow, UsageError when the node is already armed or the service has stopped.
  void arm(TimerNode& node, TimerTimePoint when);

  // Unarms `node`: true if it was armed and now will never fire; false if it was not armed
  // (never armed, already fired, or being fired: then disarm() returns only once its callback
  // has finished, unless called from that very callback). From any thread.
  bool disarm(TimerNode& node) noexcept;

  // How many nodes are armed now (for tests and statistics; takes the lock).
  std::size_t armed() const;
  // True on this service's own timer thread (where cancellations by deadline run their
  // callbacks).
  bool is_own_thread() const noexcept;

  // Stops the thread (joins it). Idempotent. Arming afterwards is a UsageError.
  void stop() noexcept;

 private:
  struct Entry {
    TimerTimePoint when;
    TimerNode* node;
  };

  void run();
  void start_thread_locked();
  void place(std::size_t i, const Entry& e) noexcept;
  void sift_up(std::size_t i, Entry e) noexcept;
  void sift_down(std::size_t i, Entry e) noexcept;
  void remove_at(std::size_t i) noexcept;
  void maybe_shrink() noexcept;

  const std::string thread_name_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;           // the timer thread waits here
  std::condition_variable callback_done_;  // disarm() waits here for a running callback
  std::vector<Entry> heap_;                // guarded by mutex_
  // Guarded by mutex_: the node whose callback runs now, and how many disarm() calls wait for
  // it to finish.
  TimerNode* running_ = nullptr;
  std::size_t disarm_waiters_ = 0;
  // Guarded by mutex_: the deadline the timer thread sleeps until (max: no timeout), so that
  // arm() notifies it only when a new node is earlier.
  TimerTimePoint sleeping_until_ = TimerTimePoint::max();
  bool started_ = false;  // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;
  std::thread::id thread_id_;  // written before the thread runs callbacks; read under mutex_
};

// The timer service of scheduler `s` (defined in the runtime).
TimerService& timer_service(Scheduler& s) noexcept;

// The timer service of the runtime whose worker calls it; UsageError ("<what> must be awaited
// from a task running on a weft runtime") on any other thread.
TimerService& current_timer_service(const char* what);

}  // namespace weft::detail

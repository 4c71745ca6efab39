// Runtime: the per-core work-stealing executor that runs weft tasks.
//
//   weft::Runtime rt({.workers = 4});
//   int n = rt.block_on(count_primes(1'000'000));        // run, wait, return or rethrow
//   weft::Future<int> f = rt.submit(count_primes(10));   // run in the background
//   int m = f.get();
//
// Each worker thread owns a work-stealing deque; idle workers steal from random victims,
// then park on a futex and burn no CPU until work arrives. Work submitted from outside the
// runtime enters through an injection queue and wakes one parked worker.
//
// Nothing is fire-and-forget: a submitted task belongs to the runtime's root scope until it
// ends. ~Runtime cancels every task still running (they see Cancelled at their next weft
// suspension point), waits for all of them, then joins the worker threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "weft/detail/as_task.hpp"
#include "weft/detail/root.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"

namespace weft {

using Duration = std::chrono::steady_clock::duration;

// How long a to_thread pool thread waits idle for another call before it exits. tokio's
// default too: a burst of blocking calls reuses its threads, an idle process gives their
// stacks back within seconds.
inline constexpr std::chrono::seconds kDefaultBlockingKeepAlive{10};

// The most workers a Runtime accepts: more is taken for a mistake (a count of tasks, say)
// rather than a machine, and refused with UsageError before any thread starts.
inline constexpr unsigned kMaxWorkers = 4096;

struct RuntimeOptions {
  unsigned workers = 0;                 // 0: std::thread::hardware_concurrency(); at most kMaxWorkers
  bool pin_workers = false;             // worker i pinned to CPU i (mod the CPU count)
  unsigned max_blocking_threads = 512;  // bound of the to_thread pool (at least 1)
  std::string name = "weft";            // thread names: weft-w0, weft-w1, ..., weft-blk
  // An idle to_thread pool thread exits after this long.
  Duration blocking_keep_alive = kDefaultBlockingKeepAlive;
};

// Counters kept by each worker; each is one relaxed load and store on the owner's own cache
// line, cheap enough to stay on in release builds.
struct WorkerStats {
  std::uint64_t tasks_run = 0;       // tasks taken from a queue (own deque, steal, injection)
  std::uint64_t tasks_spawned = 0;   // children pushed onto this worker's deque
  std::uint64_t steals = 0;          // successful steals
  std::uint64_t steal_attempts = 0;  // steal tries, successful or not
  std::uint64_t parks = 0;           // times the worker went to sleep
};

struct RuntimeStats {
  std::vector<WorkerStats> workers;
  // Coroutine frames that came from the heap rather than a worker's frame cache, process
  // wide. Constant while a program runs in steady state.
  std::uint64_t frame_heap_allocations = 0;
  // Threads of the to_thread pool alive now, busy or idle.
  unsigned blocking_threads = 0;
  // Timers armed now on this runtime: sleeping tasks, timeouts and timed gathers waiting for
  // their deadline. Zero once they have all fired or been cancelled.
  std::uint64_t timers_armed = 0;
  WorkerStats total() const;

  // A table for people: a row per worker and a total row, then the runtime-wide figures.
  //
  //   std::cout << rt.stats().to_string();
  //   worker  tasks_run  tasks_spawned  steals  steal_attempts  parks
  //        0     123456         120000      12              40      3
  //   ...
  std::string to_string() const;
  // The same figures as one JSON object for programs: {"workers":[{"tasks_run":...},...],
  // "total":{...},"frame_heap_allocations":...,"blocking_threads":...,"timers_armed":...}.
  std::string to_json() const;
};

template <class T>
class Future;

class Runtime {
 public:
  // Starts the workers; the to_thread pool starts threads on demand. Throws UsageError when
  // max_blocking_threads is 0 (to_thread could never run) or workers is above kMaxWorkers.
  // When the system refuses a worker thread, throws std::system_error (its what() says how
  // many started) after stopping and joining those that did: nothing is left running.
  explicit Runtime(RuntimeOptions options = {});
  // Cancels what still runs, waits for it, then waits for every to_thread call still running
  // on the blocking pool to return (their awaiters have ended, their results are dropped;
  // calls still queued run too, unless their awaiters were cancelled), then joins the
  // threads. So a blocking call that never returns keeps ~Runtime waiting. Calling it from
  // one of this runtime's own workers or blocking-pool threads would deadlock: that is
  // reported and the process terminates; so is calling it from its timer thread (a
  // CancellationCallback run because a deadline fired).
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Runs `task` to completion from a thread that is not one of this runtime's own, and
  // returns its value or rethrows its exception. On one of its own workers or its timer
  // thread it would deadlock, and on one of its blocking-pool threads (inside a to_thread
  // call) it would once the pool's bound is reached: each throws UsageError instead (co_await
  // the task there).
  template <class T>
  T block_on(Task<T> task) {
    require_not_own_thread("Runtime::block_on");
    return submit(std::move(task)).get();
  }

  // Starts `task` from any thread; the runtime owns it until it ends. The Future reports the
  // result; dropping the Future does not cancel the task. Once ~Runtime has begun (a task or
  // another thread submitting while the runtime is destroyed), the task is refused: it never
  // starts and its Future's get() throws UsageError, so shutdown stays bounded.
  template <class T>
  Future<T> submit(Task<T> task);

  // Any other awaitable (a gather, a task_group, ...), wrapped into a Task first.
  //
  //   auto [a, b] = rt.block_on(weft::safe_gather(load(1), load(2)));
  template <class A>
    requires detail::non_task_awaitable<A&&>
  auto block_on(A&& awaitable) {
    return block_on(detail::as_task(std::forward<A>(awaitable)));
  }
  template <class A>
    requires detail::non_task_awaitable<A&&>
  auto submit(A&& awaitable) {
    return submit(detail::as_task(std::forward<A>(awaitable)));
  }

  unsigned workers() const noexcept;
  RuntimeStats stats() const;

  // True when the calling thread is one of this runtime's workers.
  bool on_worker_thread() const noexcept;

 private:
  void require_not_own_worker(const char* what) const;
  // Also refuses the runtime's blocking-pool threads and its timer thread.
  void require_not_own_thread(const char* what) const;
  void start_root(detail::RootStateBase& state, std::coroutine_handle<> root);

  std::unique_ptr<detail::Scheduler> scheduler_;
};

// A handle on a submitted task, for plain (non-coroutine) code. It may outlive the Runtime
// (whose destructor waits for the task, so get() then returns at once).
template <class T>
class Future {
 public:
  Future(Future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Future& operator=(Future&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;
  ~Future() { reset(); }

  // Blocks until the task ends; returns its value or rethrows its exception (Cancelled if it
  // was cancelled). Once only: a second call throws UsageError. On one of the runtime's own
  // workers it would deadlock, so it throws UsageError.
  T get() {
    if (state_ == nullptr) throw UsageError("Future::get on an empty Future");
    // Compared by address only: the Future may outlive its runtime.
    if (detail::tl_worker != nullptr && &detail::tl_worker->scheduler == state_->scheduler)
      throw UsageError(
          "Future::get called on one of the runtime's own workers would deadlock; "
          "co_await the task instead");
    if (state_->consumed) throw UsageError("Future::get called twice");
    state_->wait();
    state_->consumed = true;
    // Taken out of the shared state: the worker that drops the state last must not be the one
    // that frees an exception this thread is still handling.
    if (state_->exception) std::rethrow_exception(std::exchange(state_->exception, nullptr));
    if constexpr (!std::is_void_v<T>) return std::move(*state_->value);
  }

  // Waits at most `d`; true when the task has ended.
  bool wait_for(Duration d) const {
    if (state_ == nullptr) throw UsageError("Future::wait_for on an empty Future");
    return state_->wait_for(d);
  }

  // Requests cancellation of the task: it sees Cancelled at its next weft suspension point
  // (or never starts). Returns at once; get() then reports how the task ended. No effect once
  // the task has ended.
  void cancel() {
    // A task that has ended has nothing left to cancel (its token keeps its state).
    if (state_ != nullptr && !state_->is_done()) state_->cancel.cancel();
  }

 private:
  friend class Runtime;
  explicit Future(detail::RootState<T>* state) : state_(state) {}
  void reset() noexcept {
    if (state_ != nullptr) std::exchange(state_, nullptr)->release();
  }
  detail::RootState<T>* state_;
};

template <class T>
Future<T> Runtime::submit(Task<T> task) {
  detail::require_fresh(task.handle(), "Runtime::submit");
  auto* state = new detail::RootState<T>(*scheduler_);
  detail::RootCoroutine root = detail::run_root(std::move(task), state);
  start_root(*state, root.handle);
  return Future<T>(state);
}

// The process-wide runtime, created on first use with WEFT_WORKERS workers when that
// environment variable is set, else std::thread::hardware_concurrency().
Runtime& default_runtime();

// default_runtime().block_on(task).
template <class T>
T sync_wait(Task<T> task) {
  return default_runtime().block_on(std::move(task));
}
template <class A>
  requires detail::non_task_awaitable<A&&>
auto sync_wait(A&& awaitable) {
  return sync_wait(detail::as_task(std::forward<A>(awaitable)));
}

}  // namespace weft

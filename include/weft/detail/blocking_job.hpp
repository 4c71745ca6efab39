// A call handed to the runtime's blocking pool by to_thread(), and what the pool does with it.
//
// Protocol (the Waiter protocol of waiter.hpp, with the job as the "primitive"):
//   The job lives on the heap, shared by the awaiter and the pool (`refs`), and holds the
//   Waiter itself, so that neither side can free the other's view of it: whichever of the
//   completion and the cancellation loses its CAS finds the Waiter still alive.
//   Awaiting (ToThreadAwaiter::await_suspend):
//     1. the pull check (a cancelled task submits nothing);
//     2. waiter.begin(): register the cancellation callback (cancelled already: submit nothing);
//     3. submit_blocking(): queue the job; the pool takes its reference;
//     4. waiter.start_waiting() (Setup -> Waiting): true means suspend; false means the call
//        already finished (Notified) or a cancellation came first (Cancelled), and the task
//        goes on at once. Nothing touches the job or the task after a successful step 4.
//   Completing (pool thread, after running f): CAS Setup|Waiting -> Notified; resume the
//     task only if it was Waiting (from Setup, step 4 fails and the task goes on by itself).
//   Cancelling (scope callback): Waiting -> Cancelled resumes the task at once, with f still
//     running or queued; Setup -> Cancelled lets step 4 fail. leave() has nothing to unlink:
//     a pool thread that pops a job whose waiter is Cancelled skips f.
//   Expiring: the job carries its awaiter's deadline (set before submitting); a pool thread
//     that pops it after that deadline skips f without completing the waiter, which stays
//     Waiting until the deadline's timer cancels it (the timer may fire a little late: the
//     call must not start meanwhile).
//   The awaiter's await_resume() removes the callback (Waiter::end()), then throws Cancelled
//   or takes the result; the job is freed by the last of the two references, possibly on
//   the pool thread, together with a result nobody took.
#pragma once

#include <atomic>
#include <chrono>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/context.hpp"
#include "weft/detail/waiter.hpp"

namespace weft::detail {

class Scheduler;

struct BlockingJob {
  Waiter waiter;
  // Runs the call, storing its result or exception; never throws.
  void (*invoke)(BlockingJob& self) noexcept = nullptr;
  // Deletes the concrete job.
  void (*destroy)(BlockingJob& self) noexcept = nullptr;
  BlockingJob* next = nullptr;  // the pool's FIFO, guarded by the pool's lock
  // Copies of the awaiting task's ContextVar bindings, owned by the job: the call may still
  // run after its task has gone on (and ended). Touched by one thread at a time: the awaiter
  // before submitting, the pool thread while the call runs, the last owner in destroy().
  ContextNode* context = nullptr;
  // The awaiter's deadline: written before submit_blocking() (whose lock publishes it to the
  // pool thread), read-only afterwards.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  // The awaiter's reference, plus the pool's once submitted. acq_rel decrement: the last
  // owner sees the other's writes (the result, the exception) before destroying them.
  detail::atomic<int> refs{1};

  ~BlockingJob() {
    if (context != nullptr) release_owned_context(context);
  }

  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(*this);
  }
  // Pool side, after invoke(): wakes the awaiter unless a cancellation claimed it first.
  void complete() noexcept;
  // True when the awaiter's deadline has passed: a job not started yet is skipped. Reads the
  // clock only when there is a deadline.
  bool expired() const noexcept {
    return deadline != std::chrono::steady_clock::time_point::max() &&
           std::chrono::steady_clock::now() >= deadline;
  }
  // True when the awaiter was cancelled: a job not started yet may be skipped.
  bool abandoned() const noexcept {
    // Acquire pairs with the cancellation's CAS (nothing is read after it but the state).
    return waiter.state.load(std::memory_order_acquire) == Waiter::kCancelled;
  }
};

// Queues `job` on the blocking pool of the runtime that owns `s` (taking the pool's
// reference), starting a thread if none is idle and the pool is below its bound. Throws
// UsageError once the runtime is being destroyed, and std::system_error when no thread can
// be started and none exists.
void submit_blocking(Scheduler& s, BlockingJob& job);

}  // namespace weft::detail

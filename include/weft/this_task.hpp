// this_task: what a running task can ask about itself.
//
//   for (auto& row : rows) {
//     co_await this_task::checkpoint();   // throws Cancelled once this task is cancelled
//     process(row);
//   }
//   if (this_task::cancelled()) ...       // a plain poll, for code that cannot co_await
#pragma once

#include <coroutine>

#include "weft/cancellation.hpp"
#include "weft/deadline.hpp"
#include "weft/detail/fault_injection.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/detail/worker.hpp"
#include "weft/task.hpp"

namespace weft {
namespace detail {
// Re-queues `h` behind the work already waiting (runtime/scheduler.cpp). False, queueing
// nothing, when not called on a worker.
bool yield_to_others(std::coroutine_handle<> h);
}  // namespace detail

namespace detail {

// Each this_task awaitable learns the awaiting task's promise without suspending it.
struct TokenAwaiter : CurrentPromise {
  CancellationToken await_resume() const {
    if (promise == nullptr || promise->cancel == nullptr) return {};
    return CancellationToken::adopt(promise->cancel->mirror());
  }
};

struct CheckpointAwaiter : CurrentPromise {
  void await_resume() const {
    // Test builds only (fault_injection.hpp).
    if constexpr (fault::kEnabled) fault::at_checkpoint(promise != nullptr ? promise->cancel : nullptr);
    perturb::at_suspend();  // test builds only (perturb.hpp)
    check_cancelled(promise);
  }
};

struct DeadlineAwaiter : CurrentPromise {
  Deadline await_resume() const {
    if (promise == nullptr || promise->cancel == nullptr) return Deadline::never();
    return Deadline::at(promise->cancel->deadline());
  }
};

struct YieldAwaiter {
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    promise = weft_promise_of(h);
    return yield_to_others(h);
  }
  void await_resume() const {
    resume_in(promise);
    // Test builds only (fault_injection.hpp).
    if constexpr (fault::kEnabled) fault::at_checkpoint(promise != nullptr ? promise->cancel : nullptr);
    perturb::at_suspend();  // test builds only (perturb.hpp)
    check_cancelled(promise);
  }
  PromiseBase* promise = nullptr;
};

}  // namespace detail

namespace this_task {

// co_await this_task::token() -> the CancellationToken of the calling task's scope. It stays
// valid after the scope ends (then it keeps the state it had).
inline detail::TokenAwaiter token() noexcept { return {}; }

// co_await this_task::checkpoint(): throws Cancelled if the calling task is cancelled; else
// returns at once without suspending. Two loads when nothing was cancelled: cheap enough
// for hot loops. A passed deadline is seen the same way (the timer cancels the timed scope;
// no clock is read here): checkpoint() throws Cancelled, and the timeout() whose deadline
// it was turns that into TimeoutError.
inline detail::CheckpointAwaiter checkpoint() noexcept { return {}; }

// co_await this_task::yield(): lets other ready tasks run, then continues (on any worker).
// Throws Cancelled afterwards if the task was cancelled meanwhile.
inline detail::YieldAwaiter yield() noexcept { return {}; }

// co_await this_task::deadline() -> the earliest deadline in force for the calling task: the
// earliest of its enclosing timeout() scopes and timed gathers, up to the nearest shield()
// (which starts afresh from Deadline::never()). Deadline::never() when none.
//
//   const Deadline d = co_await this_task::deadline();
//   if (d.remaining() < 10ms) co_return cached_answer();   // not worth starting
inline detail::DeadlineAwaiter deadline() noexcept { return {}; }

// A plain, non-throwing poll for CPU-bound code: true once the task running on this thread
// is cancelled. False outside weft tasks.
inline bool cancelled() noexcept {
  const detail::PromiseBase* task = detail::tl_current_task;
  return task != nullptr && task->cancel != nullptr && task->cancel->is_cancelled();
}

}  // namespace this_task
}  // namespace weft

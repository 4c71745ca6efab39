// TaskGroup: structured spawning with fail-fast cancellation (asyncio.TaskGroup, Trio's
// nursery).
//
//   auto [user, orders] = co_await task_group([&](TaskGroup& tg) -> Task<std::pair<User, Orders>> {
//     JoinHandle<User> u = tg.spawn(fetch_user(id));
//     JoinHandle<Orders> o = tg.spawn(fetch_orders(id));
//     co_return ...;   // results are read after the group ended (or once done())
//   });
//
// `co_await task_group(body)` runs `body(group)`, then waits for every task spawned into the
// group (children may spawn more while it waits), and returns the body's result.
// - On the first failure of a child or of the body, everything still running in the group
//   is cancelled and awaited, then an ExceptionGroup of every failure is thrown. It never
//   holds Cancelled: a cancelled sibling is not a failure.
// - If the caller is cancelled, the children are cancelled and awaited and Cancelled
//   propagates (not an ExceptionGroup). Groups nest; an inner group never absorbs the
//   cancellation of an outer one.
// - TaskGroup::cancel() cancels the body and every child; the group then ends quietly if the
//   body returns void (or returned a value before the cancellation), else with Cancelled.
// - spawn() into a group that is cancelled or has ended throws UsageError.
// Must be awaited from a task running on a weft runtime (UsageError otherwise).
#pragma once

#include <atomic>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/cancellation.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/errors.hpp"
#include "weft/exception_group.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft {

namespace detail {

struct GroupState : Joiner {
  GroupState(CancelState* outer, Scheduler& s) : Joiner{&child_finished}, scope(outer), scheduler(&s) {}

  // A child's final step (task_group.cpp).
  static std::coroutine_handle<> child_finished(Joiner* self, PromiseBase& child,
                                                void* frame) noexcept;

  // Children that failed for real (never Cancelled). The first cancels the group.
  void record_failure(const std::exception_ptr& e) {
    if (is_cancelled_exception(e)) return;
    bool first;
    {
      std::lock_guard<SpinLock> guard(failures_lock);
      first = failures.empty();
      failures.push_back(e);
    }
    if (first) scope.cancel();
  }

  // A child (or the body) is done with the group: the last one resumes the waiter.
  std::coroutine_handle<> release_one() noexcept {
    // acq_rel: the release publishes this child's writes; the last decrement's acquire sees
    // all of them (and `waiter`) before resuming the group.
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) return waiter;
    return std::noop_coroutine();
  }

  // Takes one more reference for a child; false once the count reached zero (ended).
  bool try_add_child() noexcept {
    std::int64_t n = pending.load(std::memory_order_relaxed);
    do {
      if (n == 0) return false;
      // Relaxed: the spawner holds a reference, so the count cannot reach zero meanwhile;
      // the child's frame is published by the deque push.
    } while (!pending.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }

  CancelState scope;
  Scheduler* scheduler;
  std::atomic<std::int64_t> pending{1};  // the body's reference + one per unfinished child
  std::coroutine_handle<> waiter;        // written before the body's release_one()
  // Release: set after the join, before the group's frame goes away.
  std::atomic<bool> ended{false};
  SpinLock failures_lock;
  std::vector<std::exception_ptr> failures;  // guarded by failures_lock
};

// Pushes a spawned child where it will run: the current worker's deque, or the runtime's
// injection queue from any other thread.
void schedule_spawned(Scheduler& s, std::coroutine_handle<> h);

}  // namespace detail

// The handle of a task spawned into a TaskGroup.
template <class T>
class [[nodiscard]] JoinHandle {
 public:
  using value_type = detail::stored_t<T>;

  JoinHandle(JoinHandle&& o) noexcept
      : handle_(std::exchange(o.handle_, nullptr)), outcome_(std::move(o.outcome_)) {}
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      drop();
      handle_ = std::exchange(o.handle_, nullptr);
      outcome_ = std::move(o.outcome_);
    }
    return *this;
  }
  JoinHandle(const JoinHandle&) = delete;
  JoinHandle& operator=(const JoinHandle&) = delete;
  ~JoinHandle() { drop(); }

  // True once the task has finished (with a value or an exception). Always true after the
  // group ended.
  bool done() const noexcept {
    // Acquire pairs with the release store in GroupState::child_finished(): the result is
    // visible.
    return handle_ && handle_.promise().finished.load(std::memory_order_acquire);
  }

  // The task's value, or rethrows its exception (Cancelled if it was cancelled). UsageError
  // before the task finished.
  value_type& result() { return outcome().value(); }

  // The task's Outcome. UsageError before the task finished.
  Outcome<T>& outcome() {
    if (!outcome_) {
      if (!done()) throw UsageError("JoinHandle: the task has not finished; wait for its group");
      auto& p = handle_.promise();
      if (p.exception) outcome_.emplace(Outcome<T>::from_exception(p.exception));
      else outcome_.emplace(Outcome<T>::from_value(p.take_stored()));
    }
    return *outcome_;
  }

 private:
  friend class TaskGroup;
  explicit JoinHandle(typename Task<T>::handle_type h) noexcept : handle_(h) {}
  void drop() noexcept {
    // acq_rel: see PromiseBase::owners.
    if (handle_ && handle_.promise().owners.fetch_sub(1, std::memory_order_acq_rel) == 1)
      handle_.destroy();
    handle_ = nullptr;
  }
  typename Task<T>::handle_type handle_;
  std::optional<Outcome<T>> outcome_;
};

class TaskGroup {
 public:
  // Starts `task` in the group (it may run on any worker) and returns its handle. From the
  // body, a child, or any thread while the group runs. UsageError once the group is
  // cancelled or has ended.
  template <class T>
  JoinHandle<T> spawn(Task<T> task) {
    detail::require_fresh(task.handle(), "TaskGroup::spawn");
    if (state_.ended.load(std::memory_order_acquire) || state_.scope.is_cancelled() ||
        !state_.try_add_child())
      throw UsageError("TaskGroup::spawn: the group was cancelled or has ended");
    auto h = task.release();
    auto& p = h.promise();
    p.joiner = &state_;
    p.cancel = &state_.scope;
    p.scope_fixed = true;
    p.owners.store(2, std::memory_order_relaxed);  // published by the push below
    detail::schedule_spawned(*state_.scheduler, h);
    return JoinHandle<T>(h);
  }

  // Cancels the body and every child, on every thread. Idempotent.
  void cancel() noexcept { state_.scope.cancel(); }

  // The group's cancellation token: cancelled when the group is (by cancel(), a failure or
  // the caller's cancellation).
  CancellationToken token() const { return CancellationToken::adopt(state_.scope.mirror()); }

  TaskGroup(detail::CancelState* outer, detail::Scheduler& s) : state_(outer, s) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // For task_group(): the group's internals.
  detail::GroupState& state() noexcept { return state_; }

 private:
  mutable detail::GroupState state_;
};

namespace detail {

struct GroupJoin {
  GroupState& group;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    group.waiter = h;
    return group.release_one() != h;  // the last reference resumes at once
  }
  void await_resume() const noexcept {}
};

template <class F>
using group_result_t = typename std::invoke_result_t<F&, TaskGroup&>::value_type;

}  // namespace detail

// co_await task_group(body) -> the body's result; see the top of this file.
template <class F>
Task<detail::group_result_t<F>> task_group(F body) {
  using R = detail::group_result_t<F>;
  detail::PromiseBase* self = co_await detail::CurrentPromise{};
  detail::Worker* w = detail::tl_worker;
  if (w == nullptr) throw UsageError("task_group must be awaited from a task on a weft runtime");
  TaskGroup group(self != nullptr ? self->cancel : nullptr, w->scheduler);
  detail::GroupState& state = group.state();

  std::optional<detail::stored_t<R>> result;
  std::exception_ptr body_error;
  try {
    Task<R> run = body(group);
    detail::require_fresh(run.handle(), "task_group body");
    if constexpr (std::is_void_v<R>) {
      co_await detail::in_scope(std::move(run), &state.scope);
      result.emplace();
    } else {
      result.emplace(co_await detail::in_scope(std::move(run), &state.scope));
    }
  } catch (...) {
    body_error = std::current_exception();
    state.record_failure(body_error);
  }
  co_await detail::GroupJoin{state};
  state.ended.store(true, std::memory_order_release);
  detail::resume_in(self);

  detail::check_cancelled(self);  // the caller's cancellation wins: Cancelled, not a group
  {
    std::vector<std::exception_ptr> failures;
    {
      std::lock_guard<detail::SpinLock> guard(state.failures_lock);
      failures.swap(state.failures);
    }
    if (!failures.empty()) throw ExceptionGroup(std::move(failures));
  }
  if (body_error) {
    // Only a Cancelled is left here. Absorbed when the group cancelled itself and there is
    // no result to lose.
    if constexpr (std::is_void_v<R>) {
      if (state.scope.cancelled_here()) co_return;
    }
    std::rethrow_exception(body_error);
  }
  if constexpr (std::is_void_v<R>) co_return;
  else co_return std::move(*result);
}

}  // namespace weft

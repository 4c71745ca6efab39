// TaskGroup: structured spawning with fail-fast cancellation (asyncio.TaskGroup, Trio's
// nursery).
//
//   auto [user, orders] = co_await task_group([&](TaskGroup& tg) -> Task<std::pair<User, Orders>> {
//     JoinHandle<User> u = tg.spawn(fetch_user(id));
//     JoinHandle<Orders> o = tg.spawn(fetch_orders(id));
//     tg.spawn(audit(id));               // a child whose result nobody needs: drop the handle
//     User user = co_await u.join();   // (one co_await per statement: g++-12 miscompiles
//     co_return {std::move(user), co_await o.join()};   //  two inside one braced list)
//   });
//
// `co_await task_group(body)` runs `body(group)`, then waits for every task spawned into the
// group (children may spawn more while it waits), and returns the body's result.
// - On the first failure of a child or of the body, everything still running in the group
//   is cancelled and awaited, then an ExceptionGroup of every failure is thrown. It never
//   holds Cancelled: a cancelled sibling is not a failure.
// - If the caller is cancelled, the children are cancelled and awaited and Cancelled
//   propagates, unless a child or the body failed for real: then that ExceptionGroup is
//   thrown (no error is ever lost) and the caller's next suspension point throws Cancelled.
//   Groups nest; an inner group never absorbs the cancellation of an outer one.
// - Supervised children (`tg.spawn(supervised, task)`) neither fail nor cancel the group
//   when they fail: the failure is kept in the JoinHandle (join_handle.hpp). A supervised
//   failure that nothing read when its handle is dropped fails the group after all (if the
//   handle is dropped while the group runs) or goes to the unobserved-error handler.
// - JoinHandle::cancel() cancels one child; its Cancelled is not a failure of the group.
// - TaskGroup::cancel() cancels the body and every child; the group then ends quietly if the
//   body returns void (or returned a value before the cancellation), else with Cancelled.
// - spawn() into a group that is cancelled or has ended throws UsageError.
// - A long-lived group holds memory only for children still running and handles alive: a
//   child whose handle was dropped frees its frame when it ends.
// - `task_group(body)` is an awaitable (no coroutine frame of its own); it converts to a
//   Task<R> and is accepted wherever a Task is (block_on, spawn, timeout, safe_gather, ...).
// Must be awaited from a task running on a weft runtime (UsageError otherwise).
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "weft/cancellation.hpp"
#include "weft/detail/as_task.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/group_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/errors.hpp"
#include "weft/exception_group.hpp"
#include "weft/join_handle.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft {

// Selects TaskGroup::spawn's supervised form (tokio's JoinSet, Kotlin's supervisorScope).
struct supervised_t {
  explicit constexpr supervised_t() = default;
};
inline constexpr supervised_t supervised{};

// Called with a supervised child's failure that nothing read before its handle was dropped,
// after its group ended (asyncio's "Task exception was never retrieved"). The default prints
// one line to stderr; nullptr restores it. Thread-safe; runs on the thread that drops the
// handle, so keep it short and non-throwing.
using UnobservedErrorHandler = void (*)(std::exception_ptr);
void set_unobserved_error_handler(UnobservedErrorHandler handler) noexcept;

class TaskGroup {
 public:
  // Starts `task` in the group (it may run on any worker) and returns its handle (dropping it
  // is fine). From the body, a child, or any thread while the group runs. UsageError once the
  // group is cancelled or has ended. A child's failure cancels the group (fail fast).
  //
  //   tg.spawn(log_request(req));                      // nobody needs the result
  //   JoinHandle<int> h = tg.spawn(count_rows(table));
  template <class T>
  JoinHandle<T> spawn(Task<T> task) {
    return start(std::move(task), false);
  }
  // As spawn(task), for a supervised child: its failure is kept in its handle, and neither
  // fails nor cancels the group (see the top of this file).
  //
  //   auto h = tg.spawn(supervised, flaky_fetch(url));
  //   if (!co_await ok(h)) ...                          // h.outcome() holds the failure
  template <class T>
  JoinHandle<T> spawn(supervised_t, Task<T> task) {
    return start(std::move(task), true);
  }
  // Any other awaitable (a gather, a nested task_group, h.join(), ...), wrapped into a Task.
  template <class A>
    requires detail::non_task_awaitable<A&&>
  auto spawn(A&& awaitable) {
    return spawn(detail::as_task(std::forward<A>(awaitable)));
  }
  template <class A>
    requires detail::non_task_awaitable<A&&>
  auto spawn(supervised_t, A&& awaitable) {
    return spawn(supervised, detail::as_task(std::forward<A>(awaitable)));
  }

  // Cancels the body and every child, on every thread. Idempotent.
  void cancel() noexcept { state_.scope.cancel(); }

  // The group's cancellation token: cancelled when the group is (by cancel(), a failure or
  // the caller's cancellation).
  CancellationToken token() const { return CancellationToken::adopt(state_.scope.mirror()); }

  // For task_group(): a group below `outer`, started on worker `w`.
  TaskGroup(detail::CancelState* outer, detail::Worker& w) : state_(outer, w) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // For task_group(): the group's internals.
  detail::GroupState& state() noexcept { return state_; }

 private:
  template <class T>
  JoinHandle<T> start(Task<T> task, bool supervised_child) {
    detail::require_fresh(task.handle(), "TaskGroup::spawn");
    detail::GroupState& g = state_;
    detail::Worker* w = detail::tl_worker;
    // The inline run holds the group open: no zero check needed there. Elsewhere a zero
    // count means the group has ended (it never rises again).
    const bool inline_spawn = g.can_spawn_inline(w);
    if (g.scope.is_cancelled() || (!inline_spawn && !g.try_add_child())) [[unlikely]]
      throw detail::SpawnRefused("TaskGroup::spawn: the group was cancelled or has ended");
    auto h = task.release();
    g.start_child(h.promise(), h.address(), supervised_child, w, inline_spawn);
    return JoinHandle<T>(h);
  }

  mutable detail::GroupState state_;
};

namespace detail {

template <class F>
using group_result_t = typename std::invoke_result_t<F&, TaskGroup&>::value_type;

// co_await task_group(body): the group lives in this awaiter (in the awaiting coroutine's
// frame); the body's end hands over to the join (GroupState::body_finished()).
template <class F>
class [[nodiscard]] GroupAwaiter {
 public:
  using R = group_result_t<F>;

  explicit GroupAwaiter(F body) : body_(std::move(body)) {}
  // Movable until awaited (so that it converts to a Task).
  GroupAwaiter(GroupAwaiter&& o) noexcept(std::is_nothrow_move_constructible_v<F>)
      : body_(std::move(o.body_)) {}

  bool await_ready() const noexcept { return false; }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
    perturb::at_suspend();  // test builds only (perturb.hpp)
    awaiting_ = weft_promise_of(caller);
    check_cancelled(awaiting_);  // a cancelled caller starts nothing
    Worker* w = tl_worker;
    if (w == nullptr) throw UsageError("task_group must be awaited from a task on a weft runtime");
    group_.emplace(awaiting_ != nullptr ? awaiting_->cancel : nullptr, *w);
    GroupState& g = group_->state();
    g.waiter = caller;
    body_joiner_.child_done = &GroupState::body_finished;
    body_joiner_.group = &g;
    try {
      run_ = body_(*group_);
      require_fresh(run_.handle(), "task_group body");
    } catch (...) {
      run_ = Task<R>{};
      body_error_ = std::current_exception();
      g.record_failure(body_error_);
      return g.body_ended();
    }
    PromiseBase& body = run_.handle().promise();
    body.cancel = &g.scope;
    if (awaiting_ != nullptr) body.context = awaiting_->context;
    body.scope_fixed = true;
    body.joiner = &body_joiner_;
    return run_.handle();
  }

  R await_resume() {
    GroupState& g = group_->state();
    resume_in(awaiting_);
    g.end_supervised();
    // No lock: every record_failure() happened before its child's (or the body's) count was
    // given up, and the join that resumed us acquired all of those. A real failure is thrown
    // even when the caller is cancelled (nothing is lost; its next suspension point throws).
    if (!g.failures.empty()) [[unlikely]] {
      // A spawn refused because the caller's cancellation reached the group is part of that
      // cancellation, not a failure of its own.
      if (awaiting_ != nullptr && awaiting_->cancel != nullptr && awaiting_->cancel->is_cancelled())
        std::erase_if(g.failures, &is_spawn_refusal);
      if (!g.failures.empty()) throw ExceptionGroup(std::move(g.failures));
    }
    check_cancelled(awaiting_);
    std::exception_ptr body_error = body_error_ ? body_error_ : run_.handle().promise().exception;
    if (body_error) {
      // Only a Cancelled is left here. Absorbed when the group cancelled itself and there is
      // no result to lose.
      if constexpr (std::is_void_v<R>) {
        if (g.scope.cancelled_here()) return;
      }
      rethrow_into(awaiting_, body_error);
    }
    if constexpr (!std::is_void_v<R>) return run_.handle().promise().take();
  }

  // Accepted wherever a Task<R> is.
  operator Task<R>() && { return as_task(std::move(*this)); }

 private:
  F body_;
  std::optional<TaskGroup> group_;
  BodyJoiner body_joiner_{};
  Task<R> run_;
  std::exception_ptr body_error_;
  PromiseBase* awaiting_ = nullptr;
};

}  // namespace detail

// co_await task_group(body) -> the body's result; see the top of this file.
template <class F>
detail::GroupAwaiter<F> task_group(F body) {
  return detail::GroupAwaiter<F>(std::move(body));
}

}  // namespace weft

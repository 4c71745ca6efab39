// safe_gather: run tasks in parallel, wait for all of them, fail fast.
//
//   auto [user, orders] = co_await safe_gather(load_user(id), load_orders(id));
//   std::vector<Report> reports = co_await safe_gather(std::move(report_tasks));
//   auto [a, b] = co_await safe_gather(return_exceptions, upload("A"), upload("B"));
//   if (!a.has_value()) log(a.exception());
//
// All tasks start at once (the first runs on the calling worker, the rest are offered to idle
// workers to steal) and results come back in argument order; a `void` task yields
// std::monostate. The tasks run in a scope of their own below the caller's: cancelling the
// caller cancels them.
//
// Fail-fast (the default): the first task to fail (in time, not in argument order) cancels the
// others; the gather waits for every one of them to finish, then rethrows that first exception
// as itself. Nothing a gather started keeps running after it returns.
//
// return_exceptions: a failure cancels nothing; every task's Outcome (a value or an exception)
// comes back.
//
// In every mode, if the caller is cancelled the tasks are cancelled and awaited and the gather
// throws Cancelled (unless every task had finished successfully before the cancellation
// reached it: then the results are returned, and the caller's next suspension point throws);
// a caller already cancelled starts nothing.
//
// The spawn and join path takes no lock and allocates nothing: the join state and the scope
// live in the awaiting coroutine's frame, children's frames come from the recycling frame
// allocator, and children that run on the calling worker are counted without atomics
// (detail/join_state.hpp). Must be awaited from a task running on a weft runtime (UsageError
// otherwise).
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "weft/detail/cancel_state.hpp"
#include "weft/detail/join_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft {

// Selects the gather mode that returns every task's Outcome instead of failing fast.
struct return_exceptions_t {
  explicit constexpr return_exceptions_t() = default;
};
inline constexpr return_exceptions_t return_exceptions{};

namespace detail {

// A child as the fork sees it: its promise (through the common base) and its frame.
struct ChildRef {
  PromiseBase* promise;
  void* frame;
  template <class T>
  static ChildRef of(const Task<T>& t) {
    return {&t.handle().promise(), t.handle().address()};
  }
};

// What every fork-join awaiter shares: the join state, the children's scope, the awaiting
// task.
struct ForkJoin {
  JoinState join;
  CancelState scope;  // parented to the awaiting task's scope in fork()
  PromiseBase* awaiting = nullptr;

  // Wires `n` fresh children (`child(i)` -> ChildRef) to the join and to a new scope below the
  // awaiting task's, pushes children n..2 onto the current worker's deque (so that child 2 is
  // popped first) and returns child 1, into which the awaiting coroutine transfers.
  template <class P, class ChildAt>
  [[gnu::always_inline]] inline std::coroutine_handle<> fork(std::coroutine_handle<P> caller,
                                                            std::uint32_t n, bool fail_fast,
                                                            ChildAt child) {
    awaiting = weft_promise_of(caller);
    scope.adopt_parent(awaiting != nullptr ? awaiting->cancel : nullptr);
    // The caller's check, through the new scope: same epoch test, one walk if needed.
    if (scope.is_cancelled()) [[unlikely]]
      check_cancelled(awaiting);
    Worker* w = tl_worker;
    if (w == nullptr)
      throw UsageError("safe_gather must be awaited from a task running on a weft runtime");
    if (fail_fast) join.cancel_on_failure = &scope;
    join.start(caller, *w, n);
    for (std::uint32_t i = 0; i < n; ++i) {
      PromiseBase* p = child(i).promise;
      p->join = &join;
      p->cancel = &scope;
    }
    for (std::uint32_t i = n - 1; i > 0; --i) w->deque.push(child(i).frame);
    if (n > 1) {
      bump(w->counters.tasks_spawned, n - 1);
      notify_work_published(*w);
    }
    return std::coroutine_handle<>::from_address(child(0).frame);
  }

  // Fail-fast ending: the first failure. A cancellation of the caller reaches the children
  // through the gather's scope and comes back as that failure; if every child had finished
  // before seeing it, the results stand and the caller's next suspension point throws.
  void rethrow_failure() {
    resume_in(awaiting);
    // Relaxed: the join that resumed us ordered the failing child's writes before this read.
    if (PromiseBase* failed = join.first_failure.load(std::memory_order_relaxed)) [[unlikely]]
      rethrow_into(awaiting, failed->exception);
  }
  // return_exceptions ending: the children's Cancelled are outcomes like any other, so the
  // caller's own cancellation is checked here.
  void throw_if_caller_cancelled() {
    resume_in(awaiting);
    check_cancelled(awaiting);
  }
};

template <class T>
Outcome<T> outcome_of(Task<T>& task) {
  auto& p = task.handle().promise();
  if (p.exception) return Outcome<T>::from_exception(p.exception);
  return Outcome<T>::from_value(p.take_stored());
}

template <bool ReturnExceptions, class... Ts>
class TupleGather {
  static constexpr std::size_t N = sizeof...(Ts);

 public:
  using result_type = std::conditional_t<ReturnExceptions, std::tuple<Outcome<Ts>...>,
                                         std::tuple<stored_t<Ts>...>>;

  explicit TupleGather(Task<Ts>&&... tasks) : tasks_(std::move(tasks)...) {}

  bool await_ready() const {
    check_fresh(std::index_sequence_for<Ts...>{});
    return N == 0;
  }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
    return fork(caller, std::index_sequence_for<Ts...>{});
  }

  result_type await_resume() {
    if constexpr (N > 0) {
      if constexpr (ReturnExceptions) state_.throw_if_caller_cancelled();
      else state_.rethrow_failure();
    }
    return take_results(std::index_sequence_for<Ts...>{});
  }

 private:
  template <std::size_t... I>
  [[gnu::always_inline]] void check_fresh(std::index_sequence<I...>) const {
    (require_fresh(std::get<I>(tasks_).handle(), "safe_gather"), ...);
  }

  template <class P, std::size_t... I>
  std::coroutine_handle<> fork(std::coroutine_handle<P> caller, std::index_sequence<I...>) {
    const std::array<ChildRef, N> children{ChildRef::of(std::get<I>(tasks_))...};
    return state_.fork(caller, static_cast<std::uint32_t>(N), !ReturnExceptions,
                       [&](std::uint32_t i) { return children[i]; });
  }

  template <std::size_t... I>
  result_type take_results(std::index_sequence<I...>) {
    // Braced initialisation: evaluated in argument order.
    if constexpr (ReturnExceptions) return result_type{outcome_of(std::get<I>(tasks_))...};
    else return result_type{std::get<I>(tasks_).handle().promise().take_stored()...};
  }

  std::tuple<Task<Ts>...> tasks_;
  ForkJoin state_;
};

template <bool ReturnExceptions, class T>
class VectorGather {
 public:
  using result_type =
      std::conditional_t<ReturnExceptions, std::vector<Outcome<T>>, std::vector<stored_t<T>>>;

  explicit VectorGather(std::vector<Task<T>>&& tasks) : tasks_(std::move(tasks)) {}

  bool await_ready() const {
    if (tasks_.size() >= UINT32_MAX)
      throw UsageError("safe_gather: more than 2^32 - 2 tasks in one gather");
    for (const Task<T>& t : tasks_) require_fresh(t.handle(), "safe_gather");
    return tasks_.empty();
  }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
    return state_.fork(caller, static_cast<std::uint32_t>(tasks_.size()), !ReturnExceptions,
                       [&](std::uint32_t i) { return ChildRef::of(tasks_[i]); });
  }

  result_type await_resume() {
    result_type results;
    if (tasks_.empty()) return results;
    if constexpr (ReturnExceptions) state_.throw_if_caller_cancelled();
    else state_.rethrow_failure();
    results.reserve(tasks_.size());
    for (Task<T>& t : tasks_) {
      if constexpr (ReturnExceptions) results.push_back(outcome_of(t));
      else results.push_back(t.handle().promise().take_stored());
    }
    return results;
  }

 private:
  std::vector<Task<T>> tasks_;
  ForkJoin state_;
};

}  // namespace detail

// co_await safe_gather(a, b, ...) -> std::tuple<A, B, ...> (void -> std::monostate)
template <class... Ts>
[[nodiscard]] detail::TupleGather<false, Ts...> safe_gather(Task<Ts>... tasks) {
  return detail::TupleGather<false, Ts...>{std::move(tasks)...};
}

// co_await safe_gather(std::vector<Task<T>>) -> std::vector<T> (void -> std::monostate)
template <class T>
[[nodiscard]] detail::VectorGather<false, T> safe_gather(std::vector<Task<T>> tasks) {
  return detail::VectorGather<false, T>{std::move(tasks)};
}

// co_await safe_gather(return_exceptions, a, b, ...) -> std::tuple<Outcome<A>, Outcome<B>, ...>
template <class... Ts>
[[nodiscard]] detail::TupleGather<true, Ts...> safe_gather(return_exceptions_t, Task<Ts>... tasks) {
  return detail::TupleGather<true, Ts...>{std::move(tasks)...};
}

// co_await safe_gather(return_exceptions, std::vector<Task<T>>) -> std::vector<Outcome<T>>
template <class T>
[[nodiscard]] detail::VectorGather<true, T> safe_gather(return_exceptions_t,
                                                        std::vector<Task<T>> tasks) {
  return detail::VectorGather<true, T>{std::move(tasks)};
}

}  // namespace weft

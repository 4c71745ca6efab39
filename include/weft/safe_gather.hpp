// safe_gather: run tasks in parallel, wait for all of them, fail fast.
//
//   auto [user, orders] = co_await safe_gather(load_user(id), load_orders(id));
//   std::vector<Report> reports = co_await safe_gather(std::move(report_tasks));
//
// All tasks start at once (the first runs on the calling worker, the rest are offered to idle
// workers to steal) and the results come back in argument order; a `void` task yields
// std::monostate. If tasks throw, the exception of the first task to fail (in time, not in
// argument order) is rethrown as itself, after every task has finished: nothing a gather
// started keeps running after it returns. If the awaiting task's scope is already cancelled
// the gather throws Cancelled without starting anything.
//
// The spawn and join path takes no lock and allocates nothing: the join state lives in the
// awaiting coroutine's frame, children's frames come from the recycling frame allocator, and
// children that run on the calling worker are counted without atomics (detail/join_state.hpp).
//
// Must be awaited from a task running on a weft runtime (UsageError otherwise).
#pragma once

#include <array>
#include <cstddef>
#include <tuple>
#include <utility>
#include <vector>

#include "weft/detail/join_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/task.hpp"

namespace weft {
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

// Wires `n` fresh children (`child(i)` -> ChildRef) to `join`, pushes children n..2 onto the
// current worker's deque (so that child 2 is popped first) and returns child 1, into which
// the awaiting coroutine transfers.
template <class P, class ChildAt>
[[gnu::always_inline]] inline std::coroutine_handle<> fork_children(JoinState& join, std::coroutine_handle<P> awaiting,
                                      std::uint32_t n, ChildAt child) {
  CancelState* scope = inherit_scope(awaiting);
  Worker* w = tl_worker;
  if (w == nullptr)
    throw UsageError("safe_gather must be awaited from a task running on a weft runtime");
  join.start(awaiting, *w, n);
  for (std::uint32_t i = 0; i < n; ++i) {
    PromiseBase* p = child(i).promise;
    p->join = &join;
    p->cancel = scope;
  }
  for (std::uint32_t i = n - 1; i > 0; --i) w->deque.push(child(i).frame);
  if (n > 1) {
    bump(w->counters.tasks_spawned, n - 1);
    notify_work_published(*w);
  }
  return std::coroutine_handle<>::from_address(child(0).frame);
}

inline void rethrow_first_failure(const JoinState& join) {
  // Relaxed: the join that resumed us ordered the failing child's writes before this read.
  if (PromiseBase* failed = join.first_failure.load(std::memory_order_relaxed))
    std::rethrow_exception(failed->exception);
}

template <class... Ts>
class TupleGather {
  static constexpr std::size_t N = sizeof...(Ts);
  using Handle = std::coroutine_handle<>;

 public:
  using result_type = std::tuple<stored_t<Ts>...>;

  explicit TupleGather(Task<Ts>&&... tasks) : tasks_(std::move(tasks)...) {}

  bool await_ready() const {
    check_fresh(std::index_sequence_for<Ts...>{});
    return N == 0;
  }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) {
    return fork(awaiting, std::index_sequence_for<Ts...>{});
  }

  result_type await_resume() {
    if constexpr (N > 0) rethrow_first_failure(join_);
    return take_results(std::index_sequence_for<Ts...>{});
  }

 private:
  template <std::size_t... I>
  void check_fresh(std::index_sequence<I...>) const {
    (require_fresh(std::get<I>(tasks_).handle(), "safe_gather"), ...);
  }

  template <std::size_t... I>
  result_type take_results(std::index_sequence<I...>) {
    // Braced initialisation: evaluated in argument order.
    return result_type{std::get<I>(tasks_).handle().promise().take_stored()...};
  }

  template <class P, std::size_t... I>
  std::coroutine_handle<> fork(std::coroutine_handle<P> awaiting, std::index_sequence<I...>) {
    const std::array<ChildRef, N> children{ChildRef::of(std::get<I>(tasks_))...};
    return fork_children(join_, awaiting, static_cast<std::uint32_t>(N),
                         [&](std::uint32_t i) { return children[i]; });
  }

  std::tuple<Task<Ts>...> tasks_;
  JoinState join_;
};

template <class T>
class VectorGather {
 public:
  using result_type = std::vector<stored_t<T>>;

  explicit VectorGather(std::vector<Task<T>>&& tasks) : tasks_(std::move(tasks)) {}

  bool await_ready() const {
    for (const Task<T>& t : tasks_) require_fresh(t.handle(), "safe_gather");
    return tasks_.empty();
  }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) {
    return fork_children(join_, awaiting, static_cast<std::uint32_t>(tasks_.size()),
                         [&](std::uint32_t i) { return ChildRef::of(tasks_[i]); });
  }

  result_type await_resume() {
    rethrow_first_failure(join_);
    result_type results;
    results.reserve(tasks_.size());
    for (Task<T>& t : tasks_) results.push_back(t.handle().promise().take_stored());
    return results;
  }

 private:
  std::vector<Task<T>> tasks_;
  JoinState join_;
};

}  // namespace detail

// co_await safe_gather(a, b, ...) -> std::tuple<A, B, ...> (void -> std::monostate)
template <class... Ts>
[[nodiscard]] detail::TupleGather<Ts...> safe_gather(Task<Ts>... tasks) {
  return detail::TupleGather<Ts...>{std::move(tasks)...};
}

// co_await safe_gather(std::vector<Task<T>>) -> std::vector<T> (void -> std::monostate)
template <class T>
[[nodiscard]] detail::VectorGather<T> safe_gather(std::vector<Task<T>> tasks) {
  return detail::VectorGather<T>{std::move(tasks)};
}

}  // namespace weft

// safe_gather: run tasks in parallel, wait for all of them, fail fast.
//
//   auto [user, orders] = co_await safe_gather(load_user(id), load_orders(id));
//   std::vector<Report> reports = co_await safe_gather(std::move(report_tasks));
//   InlineVector<long, 12> counts = co_await safe_gather(std::move(inline_children));
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
// GatherOptions{.timeout = d} (either mode, either form): the gather's scope gets a deadline
// `d` after the gather starts (children inherit it: this_task::deadline()). When it passes,
// the unfinished tasks are cancelled and awaited; then a fail-fast gather throws TimeoutError
// (unless a task had already failed with a real error: that one is rethrown as itself), and a
// return_exceptions gather returns the finished results as they are and TimeoutError as the
// Outcome of each task the deadline cancelled. Results of tasks that finished before the
// deadline are never lost. A timeout of zero or less starts nothing: TimeoutError, or every
// Outcome a TimeoutError. Duration::max() (the default) means no timeout.
//
//   auto [a, b] = co_await safe_gather(GatherOptions{.timeout = 2s}, ping(a), ping(b));
//   auto outcomes = co_await safe_gather(return_exceptions, GatherOptions{.timeout = 2s},
//                                        std::move(uploads));  // late ones: is_timeout()
//
// In every mode, if the caller is cancelled the tasks are cancelled and awaited and the gather
// throws Cancelled (unless every task had finished successfully before the cancellation
// reached it: then the results are returned, and the caller's next suspension point throws);
// a caller already cancelled starts nothing. A timeout never hides the caller's cancellation:
// Cancelled wins over TimeoutError.
//
// The spawn and join path takes no lock and allocates nothing: the join state and the scope
// live in the awaiting coroutine's frame, children's frames come from the recycling frame
// allocator, and children that run on the calling worker are counted without atomics
// (detail/join_state.hpp). A timed gather adds a timer on the runtime's timer service (one
// O(log n) arm and disarm). Must be awaited from a task running on a weft runtime (UsageError
// otherwise).
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "weft/deadline.hpp"
#include "weft/detail/as_task.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/deadline_timer.hpp"
#include "weft/detail/join_state.hpp"
#include "weft/detail/timer_service.hpp"
#include "weft/detail/worker.hpp"
#include "weft/inline_vector.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft {

// Selects the gather mode that returns every task's Outcome instead of failing fast.
struct return_exceptions_t {
  explicit constexpr return_exceptions_t() = default;
};
inline constexpr return_exceptions_t return_exceptions{};

// Options of a gather (see the top of this file).
struct GatherOptions {
  // Cancel what is unfinished this long after the gather starts, and report TimeoutError.
  // Duration::max(): no timeout.
  Duration timeout = Duration::max();
};

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
  CancelState scope{CancelState::ParentLater{}};  // parented in fork()
  PromiseBase* awaiting = nullptr;

  // Wires `n` fresh children (`child(i)` -> ChildRef) to the join and to a new scope below the
  // awaiting task's, pushes children n..2 onto the current worker's deque (so that child 2 is
  // popped first) and returns child 1, into which the awaiting coroutine transfers.
  // `before_start()` runs once the scope has its parent and before anything has started (a
  // timed gather sets its deadline and arms its timer there); it may throw.
  template <class P, class ChildAt, class BeforeStart>
  [[gnu::always_inline]] inline std::coroutine_handle<> fork(std::coroutine_handle<P> caller,
                                                            std::uint32_t n, bool fail_fast,
                                                            ChildAt child,
                                                            BeforeStart before_start) {
    awaiting = weft_promise_of(caller);
    scope.adopt_parent(awaiting != nullptr ? awaiting->cancel : nullptr);
    // The caller's check, through the new scope: same epoch test, one walk if needed.
    if (scope.is_cancelled()) [[unlikely]]
      check_cancelled(awaiting);
    Worker* w = tl_worker;
    if (w == nullptr)
      throw UsageError("safe_gather must be awaited from a task running on a weft runtime");
    before_start();
    if (fail_fast) join.cancel_on_failure = &scope;
    join.start(caller, *w, n);
    ContextNode* const context = awaiting != nullptr ? awaiting->context : nullptr;
    for (std::uint32_t i = 0; i < n; ++i) {
      PromiseBase* p = child(i).promise;
      p->join = &join;
      p->cancel = &scope;
      p->context = context;
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
  // Fail-fast ending of a timed gather: as rethrow_failure(), but a Cancelled that the gather's
  // own deadline caused is a TimeoutError.
  template <class Timer>
  void rethrow_failure_or_timeout(const Timer& timer) {
    resume_in(awaiting);
    // Relaxed: as in rethrow_failure().
    if (PromiseBase* failed = join.first_failure.load(std::memory_order_relaxed)) [[unlikely]] {
      if (timer.timed_out() && is_cancelled_exception(failed->exception)) throw TimeoutError();
      rethrow_into(awaiting, failed->exception);
    }
  }
  // return_exceptions ending: the children's Cancelled are outcomes like any other, so the
  // caller's own cancellation is checked here.
  void throw_if_caller_cancelled() {
    resume_in(awaiting);
    check_cancelled(awaiting);
  }
};

// The timeout of a timed gather (GatherOptions::timeout): a deadline on the gather's scope
// and a DeadlineTimer that cancels it (detail/deadline_timer.hpp has the protocol).
class GatherTimer {
 public:
  explicit GatherTimer(Duration timeout) noexcept : timeout_(timeout) {}
  // A gather not yet awaited may move (to be wrapped into a Task): only the setting moves.
  GatherTimer(GatherTimer&& o) noexcept : timeout_(o.timeout_) {}

  // In await_suspend, before the fork: true when the timeout is zero or less and the gather
  // must start nothing. The caller's cancellation (Cancelled) and a missing runtime
  // (UsageError) are reported first, as by an untimed gather.
  bool expires_before_start(PromiseBase* awaiting) {
    if (timeout_ > Duration::zero()) return false;
    check_cancelled(awaiting);
    (void)current_timer_service("safe_gather");
    expired_at_start_ = true;
    return true;
  }
  // The fork's before_start(): the scope has its parent, no child has started.
  void start(CancelState& scope) {
    const TimePoint when = Deadline::after(timeout_).time();
    // The deadline in force comes first (or none), and no TimeoutScope above may move it.
    if (!scope.deadline_may_move() && when >= scope.deadline()) return;
    if (when == TimePoint::max()) return;
    scope.restrict_deadline(when);
    timer_.arm(current_timer_service("safe_gather"), scope, when);
  }
  // First thing in await_resume: afterwards the timer is off and timed_out() is final.
  void finish() noexcept { timer_.disarm(); }

  bool expired_at_start() const noexcept { return expired_at_start_; }
  // The deadline cancelled the gather, and the caller is not cancelled.
  bool timed_out() const noexcept { return timer_.timed_out(); }

 private:
  Duration timeout_;
  DeadlineTimer timer_;
  bool expired_at_start_ = false;
};

// The untimed gathers' stand-in for GatherTimer, and their fork's before_start().
struct NoGatherTimer {};
struct NoHook {
  void operator()() const noexcept {}
};

template <class T>
Outcome<T> timeout_outcome() {
  return Outcome<T>::from_exception(std::make_exception_ptr(TimeoutError()));
}

// A task of a timed return_exceptions gather that the deadline cancelled reports TimeoutError.
template <class T>
void cancelled_to_timeout(Outcome<T>& outcome) {
  if (outcome.is_cancelled()) outcome = timeout_outcome<T>();
}

template <class T>
Outcome<T> outcome_of(Task<T>& task) {
  auto& p = task.handle().promise();
  if (p.exception) return Outcome<T>::from_exception(p.exception);
  return Outcome<T>::from_value(p.take_stored());
}

template <bool ReturnExceptions, bool Timed, class... Ts>
class TupleGather {
  static constexpr std::size_t N = sizeof...(Ts);
  using Timer = std::conditional_t<Timed, GatherTimer, NoGatherTimer>;

 public:
  using result_type = std::conditional_t<ReturnExceptions, std::tuple<Outcome<Ts>...>,
                                         std::tuple<stored_t<Ts>...>>;

  explicit TupleGather(Task<Ts>&&... tasks)
    requires(!Timed)
      : tasks_(std::move(tasks)...) {}
  TupleGather(Duration timeout, Task<Ts>&&... tasks)
    requires Timed
      : tasks_(std::move(tasks)...), timer_(timeout) {}
  // Movable until awaited, so that a gather is accepted wherever a Task is (as_task.hpp).
  TupleGather(TupleGather&& o) noexcept
      : tasks_(std::move(o.tasks_)), timer_(std::move(o.timer_)) {}

  bool await_ready() const {
    check_fresh(std::index_sequence_for<Ts...>{});
    return N == 0;
  }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
    perturb::at_suspend();  // test builds only (perturb.hpp)
    if constexpr (Timed) {
      if (timer_.expires_before_start(weft_promise_of(caller))) return caller;
    }
    return fork(caller, std::index_sequence_for<Ts...>{});
  }

  result_type await_resume() {
    if constexpr (Timed) {
      timer_.finish();
      if (timer_.expired_at_start()) {
        if constexpr (ReturnExceptions) return result_type{timeout_outcome<Ts>()...};
        else throw TimeoutError();
      }
    }
    if constexpr (N > 0) {
      if constexpr (ReturnExceptions) state_.throw_if_caller_cancelled();
      else if constexpr (Timed) state_.rethrow_failure_or_timeout(timer_);
      else state_.rethrow_failure();
    }
    if constexpr (Timed && ReturnExceptions) {
      result_type results = take_results(std::index_sequence_for<Ts...>{});
      if (timer_.timed_out())
        std::apply([](auto&... outcome) { (cancelled_to_timeout(outcome), ...); }, results);
      return results;
    } else {
      return take_results(std::index_sequence_for<Ts...>{});
    }
  }

 private:
  template <std::size_t... I>
  [[gnu::always_inline]] void check_fresh(std::index_sequence<I...>) const {
    (require_fresh(std::get<I>(tasks_).handle(), "safe_gather"), ...);
  }

  template <class P, std::size_t... I>
  std::coroutine_handle<> fork(std::coroutine_handle<P> caller, std::index_sequence<I...>) {
    const std::array<ChildRef, N> children{ChildRef::of(std::get<I>(tasks_))...};
    return state_.fork(
        caller, static_cast<std::uint32_t>(N), !ReturnExceptions,
        [&](std::uint32_t i) { return children[i]; }, before_start());
  }

  template <std::size_t... I>
  result_type take_results(std::index_sequence<I...>) {
    // Braced initialisation: evaluated in argument order.
    if constexpr (ReturnExceptions) return result_type{outcome_of(std::get<I>(tasks_))...};
    else return result_type{std::get<I>(tasks_).handle().promise().take_stored()...};
  }

  // The fork's before_start(): a timed gather's deadline and timer.
  auto before_start() noexcept {
    if constexpr (Timed) return [this] { timer_.start(state_.scope); };
    else return NoHook{};
  }

  std::tuple<Task<Ts>...> tasks_;
  ForkJoin state_;
  [[no_unique_address]] Timer timer_;
};

// The sequences of tasks a gather takes (std::vector, InlineVector), and the sequence of the
// same shape its results come back in.
template <class C>
struct TaskSequence : std::false_type {};
template <class T>
struct TaskSequence<std::vector<Task<T>>> : std::true_type {
  using value_type = T;
  template <class U>
  using rebind = std::vector<U>;
};
template <class T, std::size_t N>
struct TaskSequence<InlineVector<Task<T>, N>> : std::true_type {
  using value_type = T;
  template <class U>
  using rebind = InlineVector<U, N>;
};
template <class C>
concept task_sequence = TaskSequence<C>::value;

template <bool ReturnExceptions, bool Timed, class Tasks>
class SequenceGather {
  using Timer = std::conditional_t<Timed, GatherTimer, NoGatherTimer>;
  using T = typename TaskSequence<Tasks>::value_type;
  template <class U>
  using Sequence = typename TaskSequence<Tasks>::template rebind<U>;

 public:
  using result_type =
      std::conditional_t<ReturnExceptions, Sequence<Outcome<T>>, Sequence<stored_t<T>>>;

  explicit SequenceGather(Tasks&& tasks)
    requires(!Timed)
      : tasks_(std::move(tasks)) {}
  SequenceGather(Duration timeout, Tasks&& tasks)
    requires Timed
      : tasks_(std::move(tasks)), timer_(timeout) {}
  // Movable until awaited, so that a gather is accepted wherever a Task is (as_task.hpp).
  SequenceGather(SequenceGather&& o) noexcept
      : tasks_(std::move(o.tasks_)), timer_(std::move(o.timer_)) {}

  bool await_ready() const {
    if (tasks_.size() >= UINT32_MAX)
      throw UsageError("safe_gather: more than 2^32 - 2 tasks in one gather");
    for (const Task<T>& t : tasks_) require_fresh(t.handle(), "safe_gather");
    return tasks_.empty();
  }

  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> caller) {
    perturb::at_suspend();  // test builds only (perturb.hpp)
    if constexpr (Timed) {
      if (timer_.expires_before_start(weft_promise_of(caller))) return caller;
    }
    return state_.fork(
        caller, static_cast<std::uint32_t>(tasks_.size()), !ReturnExceptions,
        [&](std::uint32_t i) { return ChildRef::of(tasks_[i]); }, before_start());
  }

  result_type await_resume() {
    result_type results;
    if (tasks_.empty()) return results;
    results.reserve(tasks_.size());
    if constexpr (Timed) {
      timer_.finish();
      if (timer_.expired_at_start()) {
        if constexpr (ReturnExceptions) {
          for (std::size_t i = 0; i < tasks_.size(); ++i) results.push_back(timeout_outcome<T>());
          return results;
        } else {
          throw TimeoutError();
        }
      }
    }
    if constexpr (ReturnExceptions) state_.throw_if_caller_cancelled();
    else if constexpr (Timed) state_.rethrow_failure_or_timeout(timer_);
    else state_.rethrow_failure();
    for (Task<T>& t : tasks_) {
      if constexpr (ReturnExceptions) results.push_back(outcome_of(t));
      else results.push_back(t.handle().promise().take_stored());
    }
    if constexpr (Timed && ReturnExceptions) {
      if (timer_.timed_out())
        for (Outcome<T>& outcome : results) cancelled_to_timeout(outcome);
    }
    return results;
  }

 private:
  // The fork's before_start(): a timed gather's deadline and timer.
  auto before_start() noexcept {
    if constexpr (Timed) return [this] { timer_.start(state_.scope); };
    else return NoHook{};
  }

  Tasks tasks_;
  ForkJoin state_;
  [[no_unique_address]] Timer timer_;
};

}  // namespace detail

// co_await safe_gather(a, b, ...) -> std::tuple<A, B, ...> (void -> std::monostate)
template <class... Ts>
[[nodiscard]] detail::TupleGather<false, false, Ts...> safe_gather(Task<Ts>... tasks) {
  return detail::TupleGather<false, false, Ts...>{std::move(tasks)...};
}

// co_await safe_gather(std::vector<Task<T>>) -> std::vector<T> (void -> std::monostate)
// co_await safe_gather(InlineVector<Task<T>, N>) -> InlineVector<T, N>: the same, with the
// tasks and their results held in the caller's frame (no allocation; inline_vector.hpp).
template <detail::task_sequence Tasks>
[[nodiscard]] detail::SequenceGather<false, false, Tasks> safe_gather(Tasks tasks) {
  return detail::SequenceGather<false, false, Tasks>{std::move(tasks)};
}

// co_await safe_gather(return_exceptions, a, b, ...) -> std::tuple<Outcome<A>, Outcome<B>, ...>
template <class... Ts>
[[nodiscard]] detail::TupleGather<true, false, Ts...> safe_gather(return_exceptions_t,
                                                                  Task<Ts>... tasks) {
  return detail::TupleGather<true, false, Ts...>{std::move(tasks)...};
}

// co_await safe_gather(return_exceptions, std::vector<Task<T>>) -> std::vector<Outcome<T>>
// (an InlineVector<Task<T>, N> gives an InlineVector<Outcome<T>, N>)
template <detail::task_sequence Tasks>
[[nodiscard]] detail::SequenceGather<true, false, Tasks> safe_gather(return_exceptions_t,
                                                                     Tasks tasks) {
  return detail::SequenceGather<true, false, Tasks>{std::move(tasks)};
}

// co_await safe_gather(GatherOptions{.timeout = d}, a, b, ...) -> std::tuple<A, B, ...>, or
// TimeoutError once `d` has passed (the unfinished tasks cancelled and awaited first).
//
//   auto [user, feed] = co_await safe_gather(GatherOptions{.timeout = 300ms}, user(id), feed(id));
template <class... Ts>
[[nodiscard]] detail::TupleGather<false, true, Ts...> safe_gather(GatherOptions options,
                                                                  Task<Ts>... tasks) {
  return detail::TupleGather<false, true, Ts...>{options.timeout, std::move(tasks)...};
}

// co_await safe_gather(GatherOptions{.timeout = d}, std::vector<Task<T>>) -> std::vector<T>, or
// TimeoutError (an InlineVector of tasks gives an InlineVector of results).
template <detail::task_sequence Tasks>
[[nodiscard]] detail::SequenceGather<false, true, Tasks> safe_gather(GatherOptions options,
                                                                     Tasks tasks) {
  return detail::SequenceGather<false, true, Tasks>{options.timeout, std::move(tasks)};
}

// co_await safe_gather(return_exceptions, GatherOptions{.timeout = d}, a, b, ...)
//     -> std::tuple<Outcome<A>, ...>: the tasks the deadline cancelled hold TimeoutError.
//
//   auto [a, b] = co_await safe_gather(return_exceptions, GatherOptions{.timeout = 1s}, f(), g());
//   if (a.is_timeout()) ...
template <class... Ts>
[[nodiscard]] detail::TupleGather<true, true, Ts...> safe_gather(return_exceptions_t,
                                                                 GatherOptions options,
                                                                 Task<Ts>... tasks) {
  return detail::TupleGather<true, true, Ts...>{options.timeout, std::move(tasks)...};
}

// co_await safe_gather(return_exceptions, GatherOptions{.timeout = d}, std::vector<Task<T>>)
//     -> std::vector<Outcome<T>>: the tasks the deadline cancelled hold TimeoutError (an
// InlineVector of tasks gives an InlineVector of Outcomes).
template <detail::task_sequence Tasks>
[[nodiscard]] detail::SequenceGather<true, true, Tasks> safe_gather(return_exceptions_t,
                                                                    GatherOptions options,
                                                                    Tasks tasks) {
  return detail::SequenceGather<true, true, Tasks>{options.timeout, std::move(tasks)};
}

// The tuple forms over any awaitables (gathers, task_groups, joins, ...): each one that is
// not a Task is wrapped into one (as_task.hpp); Tasks pass as they are.
//
//   auto [page, rows] = co_await safe_gather(fetch(url), task_group(load_all));
template <class... As>
  requires(sizeof...(As) > 0 && (detail::awaitable<As&&> && ...) &&
           !(detail::is_task_v<std::remove_cvref_t<As>> && ...))
auto safe_gather(As&&... awaitables) {
  return safe_gather(detail::to_task(std::forward<As>(awaitables))...);
}
template <class... As>
  requires(sizeof...(As) > 0 && (detail::awaitable<As&&> && ...) &&
           !(detail::is_task_v<std::remove_cvref_t<As>> && ...))
auto safe_gather(return_exceptions_t, As&&... awaitables) {
  return safe_gather(return_exceptions, detail::to_task(std::forward<As>(awaitables))...);
}
template <class... As>
  requires(sizeof...(As) > 0 && (detail::awaitable<As&&> && ...) &&
           !(detail::is_task_v<std::remove_cvref_t<As>> && ...))
auto safe_gather(GatherOptions options, As&&... awaitables) {
  return safe_gather(options, detail::to_task(std::forward<As>(awaitables))...);
}
template <class... As>
  requires(sizeof...(As) > 0 && (detail::awaitable<As&&> && ...) &&
           !(detail::is_task_v<std::remove_cvref_t<As>> && ...))
auto safe_gather(return_exceptions_t, GatherOptions options, As&&... awaitables) {
  return safe_gather(return_exceptions, options,
                     detail::to_task(std::forward<As>(awaitables))...);
}

}  // namespace weft

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
#include "weft/detail/join_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/errors.hpp"
#include "weft/exception_group.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft {

namespace detail {

// How a TaskGroup counts its children back in (the join protocol of JoinState, extended to
// children that come and go while the group runs).
//
// Protocol.
//   A group starts on worker W with an inline run open (InlineRun, join_state.hpp). While W
//   keeps running the chain of symmetric transfers that started the group, a child spawned
//   on W is pushed onto W's deque and counted in a plain integer (`local_spawned`); once the
//   body has ended, the join pops those children back off the bottom of W's deque and runs
//   them itself, counting each that finishes (`local_done`), again without atomics.
//   `pending` (atomic) counts everything else: +1 for a child spawned any other way (from
//   another thread, on W after the inline run ended, or while foreign work sits above the
//   group's children in W's deque), -1 for a child that finishes outside the inline run, and
//   +1 for the body if the inline run ends while the body still runs. The inline run holds
//   kInlineRunBias, more than any number of children, so `pending` cannot reach zero while
//   the run is open.
//   The inline run ends
//   - by completion: the body has ended, every child counted inline finished inline (so none
//     was stolen), and `pending` still holds exactly the bias (nothing else in flight): one
//     CAS bias -> 0 ends the group. A group whose children all ran on W costs that one
//     locked instruction, plus the deque pops;
//   - by settling: when control returns to W's scheduler loop, or when the join's next child
//     is not at the bottom of W's deque, the run adds local_spawned - local_done - bias (+1
//     while the body runs) to `pending`.
//   Whoever brings `pending` to zero resumes the waiter. Zero means the group has ended: a
//   spawn that finds it there fails.
//
// Invariants.
//   - `owner` is fixed at construction. `inline_run`, the local counts, `in_deque` and
//     `body_running` are touched only on W while the run is open: every other thread
//     compares `owner` with its own worker first and never reads them.
//   - The children spawned inline and not yet popped by the join sit at W's deque indices
//     below base + in_deque (the lowest ones possibly taken by thieves, which steal from the
//     top). A spawn counts inline only when W's bottom is exactly base + in_deque, and the
//     join pops only under the same test, so it never pops anything but its own children.
//   - Until the run ends, `pending` >= bias - (children stolen and finished) > 0: the
//     group's frame cannot go away while W may still touch it.
struct GroupState : Joiner, InlineRun {
  // More than the children one group can ever have in flight.
  static constexpr std::int64_t kInlineRunBias = std::int64_t{1} << 48;

  GroupState(CancelState* outer, Worker& w)
      : Joiner{&child_finished},
        InlineRun{&settle_group},
        scope(outer),
        scheduler(&w.scheduler),
        owner(&w),
        base(w.deque.bottom_index()) {
    open(w);
  }

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

  // True on W while the inline run is open.
  bool inline_on(const Worker* w) const noexcept { return w == owner && inline_run; }
  // A spawn on W may be counted inline (see the invariants).
  bool can_spawn_inline(const Worker* w) const noexcept {
    return inline_on(w) && w->deque.bottom_index() == base + in_deque;
  }

  // The body has ended (the join, on any thread): where control goes next.
  std::coroutine_handle<> body_ended(std::coroutine_handle<> join) noexcept {
    waiter = join;
    Worker* w = tl_worker;
    if (inline_on(w)) {
      body_running = false;
      return next_inline(*w);
    }
    return release_one();
  }

  // On W, inline, after the body ended or a child finished: the next child to run, the
  // waiter (the group is complete), or noop once the run settled with work in flight.
  std::coroutine_handle<> next_inline(Worker& w) noexcept {
    if (in_deque > 0 && w.deque.bottom_index() == base + in_deque) {
      if (void* next = w.deque.pop()) {
        --in_deque;
        bump(w.counters.tasks_run);
        return std::coroutine_handle<>::from_address(next);
      }
    }
    close(w);
    if (local_done == local_spawned) {
      std::int64_t expected = kInlineRunBias;
      // acq_rel: acquires the writes of children spawned and finished elsewhere (their
      // decrements are releases); releases ours to the spawn that next finds zero.
      if (pending.compare_exchange_strong(expected, 0, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
        inline_run = false;
        return waiter;
      }
    }
    return settle();
  }

  // Ends the inline run (already off W's stack): hands the inline counts over to `pending`.
  // Touches nothing of the group after the addition.
  std::coroutine_handle<> settle() noexcept {
    inline_run = false;
    const std::int64_t delta = static_cast<std::int64_t>(local_spawned) -
                               static_cast<std::int64_t>(local_done) - kInlineRunBias +
                               (body_running ? 1 : 0);
    // acq_rel: as in release_one().
    if (pending.fetch_add(delta, std::memory_order_acq_rel) + delta == 0) return waiter;
    return std::noop_coroutine();
  }

  // A child (or the body) counted in `pending` is done: the last one resumes the waiter.
  std::coroutine_handle<> release_one() noexcept {
    // acq_rel: the release publishes this child's writes; the last decrement's acquire sees
    // all of them (and `waiter`) before resuming the group.
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) return waiter;
    return std::noop_coroutine();
  }

  // Takes one more count for a child spawned outside the inline run; false once the count
  // reached zero (ended).
  bool try_add_child() noexcept {
    std::int64_t n = pending.load(std::memory_order_relaxed);
    do {
      if (n == 0) return false;
      // Relaxed: the child's frame is published by its push; a spawner that holds no count
      // of its own (another thread) is told apart by the zero test.
    } while (!pending.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }

  // Something that must hear of every child that finishes while it is registered (a wait()
  // on JoinHandles). Runs under `listeners_lock`, on the finishing child's thread, before
  // the child gives up its count: it must be short and must not touch `child` unless it
  // watches `frame` (an unwatched child's frame may already be gone).
  struct Listener {
    void (*child_finished)(Listener* self, PromiseBase& child, void* frame) noexcept;
    Listener* prev = nullptr;  // guarded by listeners_lock
    Listener* next = nullptr;
  };
  // Registers `l`. From then on, every child that finishes calls it; a child that finished
  // before is seen by the caller's own check of JoinHandle::done() made after this returns
  // (see child_finished() for the handshake).
  void add_listener(Listener& l) noexcept {
    std::lock_guard<SpinLock> guard(listeners_lock);
    l.prev = nullptr;
    l.next = listeners;
    if (listeners != nullptr) listeners->prev = &l;
    listeners = &l;
    // seq_cst: ordered before the caller's done() loads; pairs with child_finished().
    has_listeners.store(true, std::memory_order_seq_cst);
  }
  // Unregisters `l`; no call of it runs or starts after this returns.
  void remove_listener(Listener& l) noexcept {
    std::lock_guard<SpinLock> guard(listeners_lock);
    if (l.prev != nullptr) l.prev->next = l.next;
    else listeners = l.next;
    if (l.next != nullptr) l.next->prev = l.prev;
    // Relaxed: only an optimisation for the children (a stale true costs one lock); no wait is
    // registered any more, so there is nothing for a child to miss.
    if (listeners == nullptr) has_listeners.store(false, std::memory_order_relaxed);
  }

  CancelState scope;
  Scheduler* scheduler;
  Worker* const owner;
  const std::int64_t base;              // W's deque bottom when the group started
  std::uint32_t local_spawned = 0;      // inline-run state: W only, see the invariants
  std::uint32_t local_done = 0;
  std::uint32_t in_deque = 0;
  bool inline_run = true;
  bool body_running = true;
  std::atomic<std::int64_t> pending{kInlineRunBias};
  std::coroutine_handle<> waiter;       // written before the body's count is given up
  SpinLock failures_lock;
  std::vector<std::exception_ptr> failures;  // guarded by failures_lock
  SpinLock listeners_lock;
  Listener* listeners = nullptr;  // guarded by listeners_lock
  // True while a listener is registered: one load on every child's finish.
  std::atomic<bool> has_listeners{false};

 private:
  static std::coroutine_handle<> settle_group(InlineRun* self) noexcept {
    return static_cast<GroupState*>(self)->settle();
  }
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
    // Acquire pairs with the child's release in GroupState::child_finished(): the result is
    // visible.
    return handle_ && (handle_.promise().handoff.load(std::memory_order_acquire) &
                       detail::PromiseBase::kChildFinished) != 0;
  }

  // The task's value, or rethrows its exception (Cancelled if it was cancelled). UsageError
  // before the task finished.
  value_type& result() {
    if (outcome_) return outcome_->value();
    // Read in place: the frame holds the result for as long as this handle lives.
    if (!done()) throw UsageError("JoinHandle: the task has not finished; wait for its group");
    auto& p = handle_.promise();
    if (p.exception) [[unlikely]]
      std::rethrow_exception(p.exception);
    if constexpr (std::is_void_v<T>) return unit_;
    else return p.value;
  }

  // For weft's own primitives (wait()): the task's promise and frame.
  detail::PromiseBase* promise_base() const noexcept {
    return handle_ ? &handle_.promise() : nullptr;
  }
  void* frame_address() const noexcept { return handle_.address(); }

  // The task's Outcome. UsageError before the task finished. The first call moves the result
  // out of the task's frame into the handle (a reference result() returned before now
  // refers to the moved-from value); result() then reads the Outcome.
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
  // The hand-off with GroupState::child_finished(): whichever side comes second destroys
  // the frame. A finished child has already decided (it saw no drop and left the frame to
  // us), so the common case, a handle dropped after its task finished, needs no locked
  // instruction.
  void drop() noexcept {
    if (!handle_) return;
    std::atomic<std::uint8_t>& handoff = handle_.promise().handoff;
    // Acquire (both): pairs with the child's acq_rel fetch_add; it no longer touches the
    // frame. (Each bit is set once: adding is or-ing, without a compare-exchange loop.)
    if ((handoff.load(std::memory_order_acquire) & detail::PromiseBase::kChildFinished) != 0 ||
        (handoff.fetch_add(detail::PromiseBase::kHandleDropped, std::memory_order_acq_rel) &
         detail::PromiseBase::kChildFinished) != 0)
      handle_.destroy();
    handle_ = nullptr;
  }
  typename Task<T>::handle_type handle_;
  // Made by the first outcome() call, which moves the value out of the frame.
  std::optional<Outcome<T>> outcome_;
  [[no_unique_address]] std::monostate unit_;  // result() of a void task
};

class TaskGroup {
 public:
  // Starts `task` in the group (it may run on any worker) and returns its handle. From the
  // body, a child, or any thread while the group runs. UsageError once the group is
  // cancelled or has ended.
  template <class T>
  JoinHandle<T> spawn(Task<T> task) {
    detail::require_fresh(task.handle(), "TaskGroup::spawn");
    detail::GroupState& g = state_;
    detail::Worker* w = detail::tl_worker;
    // The inline run holds the group open: no zero check needed there. Elsewhere a zero
    // count means the group has ended (it never rises again).
    const bool inline_spawn = g.can_spawn_inline(w);
    if (g.scope.is_cancelled() || (!inline_spawn && !g.try_add_child()))
      [[unlikely]]
      throw UsageError("TaskGroup::spawn: the group was cancelled or has ended");
    auto h = task.release();
    auto& p = h.promise();
    p.joiner = &g;
    p.cancel = &g.scope;
    p.scope_fixed = true;
    if (inline_spawn) {
      ++g.local_spawned;
      ++g.in_deque;
      w->deque.push(h.address());
      detail::bump(w->counters.tasks_spawned);
      detail::notify_work_published(*w);
    } else {
      detail::schedule_spawned(*g.scheduler, h);
    }
    return JoinHandle<T>(h);
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
  mutable detail::GroupState state_;
};

namespace detail {

struct GroupJoin {
  GroupState& group;
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) noexcept {
    return group.body_ended(h);  // h itself when the group is already complete
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
  TaskGroup group(self != nullptr ? self->cancel : nullptr, *w);
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
  detail::resume_in(self);

  detail::check_cancelled(self);  // the caller's cancellation wins: Cancelled, not a group
  // No lock: every record_failure() happened before its child's (or the body's) count was
  // given up, and the join that resumed us acquired all of those.
  if (!state.failures.empty()) throw ExceptionGroup(std::move(state.failures));
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

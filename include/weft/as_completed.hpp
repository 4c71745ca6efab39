// as_completed: spawn tasks into a TaskGroup and take their results in the order they finish.
//
//   co_await task_group([&](TaskGroup& tg) -> Task<void> {
//     Completions<Page> pages = as_completed(tg, std::move(fetches));
//     while (std::optional<Completed<Page>> c = co_await pages.next()) {
//       if (c->outcome.has_value()) render(c->index, c->outcome.value());
//       else log_failure(c->index, c->outcome.exception());
//     }
//   });
//
// as_completed() spawns every task into `tg` at once (UsageError as TaskGroup::spawn when
// the group is cancelled or has ended). next() hands back one finished task at a time, with
// its index in `tasks` and its Outcome, in completion order, and an empty optional once all
// were handed out.
// - A task's failure is handed to the caller in its Outcome instead of failing the group:
//   the caller decides. Failures the caller never sees are not lost: when the Completions
//   object is destroyed before handing everything out, the tasks still running are
//   cancelled, and every real failure (not Cancelled) not handed out, finished already or
//   later, fails the group, which reports it in its ExceptionGroup as usual. The group
//   awaits all of them.
// - The Completions object belongs to the group: it holds the group open while it lives, so
//   keep it in the group's body or a child (destroyed before the group can end). Its hold also
//   ends when the group is cancelled (by a failure, cancel(), or an outer cancellation such as
//   a timeout around the group): it then does what its destructor does (cancels the tasks
//   still running, hands the real failures not yet handed out to the group), so a Completions
//   moved out of the body cannot keep a cancelled group open. A group that is never cancelled
//   still waits for such a Completions to go away.
// - as_completed() starts every task or none: if the group is cancelled while it spawns, the
//   tasks not yet spawned never start and come back (or, abandoned, are dropped) with a
//   Cancelled Outcome, as a task cancelled before it starts would; nothing is thrown then.
// - next() or size() on a moved-from Completions throws UsageError.
// - next() waits without holding a worker; it is cancellable: a cancelled caller gets
//   Cancelled (level-triggered, even when a result is ready). One next() at a time
//   (UsageError otherwise).
#pragma once

#include <coroutine>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "weft/cancellation.hpp"
#include "weft/detail/settled.hpp"
#include "weft/detail/waiter.hpp"
#include "weft/errors.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"
#include "weft/task_group.hpp"
#include "weft/wait.hpp"  // release_group_hold

namespace weft {

template <class T>
struct Completed {
  std::size_t index;   // the task's position in the vector given to as_completed()
  Outcome<T> outcome;  // how it finished
};

namespace detail {

// Shared by the Completions object and the tasks' runners (each holds a reference).
// Protocol: a runner that finishes appends its Completed under `mutex` and, if next() is
// parked, claims and wakes it (Waiter protocol, this state as the primitive). next() takes
// from `ready` under the same mutex or parks. Once the Completions object is gone
// (`abandoned`), runners keep their results to themselves and rethrow real failures into
// the group.
template <class T>
struct CompletionState {
  CompletionState(std::size_t n, GroupState& g) : total(n), group(&g) {}

  // A runner's result; false when nobody will take it any more.
  bool deliver(std::size_t index, Outcome<T>&& outcome) {
    Waiter* wake = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (abandoned) return false;
      ready.push_back(Completed<T>{index, std::move(outcome)});
      if (parked != nullptr && parked->claim_for_wake()) {
        wake = parked;
        parked = nullptr;
      }
    }
    if (wake != nullptr) resume_waiter(wake->scheduler, wake->handle);
    return true;
  }

  static void leave(Waiter* w) noexcept {
    auto* self = static_cast<CompletionState*>(w->primitive);
    std::lock_guard<std::mutex> lock(self->mutex);
    if (self->parked == w) self->parked = nullptr;
  }

  // Once only, by the Completions' destructor or the group's cancellation, whichever comes
  // first: stop taking results, cancel the tasks still running, hand the real failures not
  // handed out to the group, and release the hold on the group (after which the group may
  // end and `group` must not be touched again).
  void abandon() noexcept {
    bool all_delivered;
    std::deque<Completed<T>> unseen;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (abandoned) return;
      abandoned = true;
      all_delivered = handed_out + ready.size() == total;
      unseen.swap(ready);
    }
    if (!all_delivered) cancel_rest.cancel();
    for (Completed<T>& c : unseen)
      if (c.outcome.has_exception() && !c.outcome.is_cancelled())
        group->record_failure(c.outcome.exception());
    release_group_hold(*group);
  }

  // Registered on the group's scope while the Completions holds the group: the group's
  // cancellation ends the hold.
  struct GroupCancelled : CancelCallbackNode {
    CompletionState* state = nullptr;
  } on_group_cancelled;
  static void group_cancelled(CancelCallbackNode* node) noexcept {
    static_cast<GroupCancelled*>(node)->state->abandon();
  }

  std::mutex mutex;
  std::deque<Completed<T>> ready;  // guarded by mutex
  std::size_t handed_out = 0;      // guarded by mutex
  const std::size_t total;
  Waiter* parked = nullptr;        // guarded by mutex
  bool next_running = false;       // guarded by mutex
  bool abandoned = false;          // guarded by mutex
  CancellationSource cancel_rest;  // cancelled when the Completions object goes away
  GroupState* group;               // held open (a count in its `pending`) by the Completions
};

template <class T>
Task<void> completion_runner(std::size_t index, Task<T> task,
                             std::shared_ptr<CompletionState<T>> state) {
  Outcome<T> outcome =
      co_await settled(with_cancellation(state->cancel_rest.token(), std::move(task)));
  if (!state->deliver(index, std::move(outcome))) {
    // Nobody takes results any more: a real failure fails the group instead of vanishing.
    if (outcome.has_exception() && !outcome.is_cancelled()) std::rethrow_exception(outcome.exception());
  }
}

}  // namespace detail

// The results of as_completed(), in completion order; see the top of this file.
template <class T>
class Completions {
 public:
  Completions(Completions&&) noexcept = default;
  Completions& operator=(Completions&&) = delete;
  Completions(const Completions&) = delete;
  Completions& operator=(const Completions&) = delete;

  // Cancels the tasks not yet handed out that are still running (their group awaits them),
  // reports the real failures not handed out to the group, and lets the group end; unless the
  // group's cancellation did so already.
  ~Completions() {
    if (state_ == nullptr) return;
    // Returns at once, without touching the group's scope, when the callback has run (the
    // group may have ended since); waits for it when it is running on another thread.
    state_->group->scope.remove_callback(state_->on_group_cancelled);
    state_->abandon();
  }

  class NextAwaiter {
   public:
    explicit NextAwaiter(detail::CompletionState<T>& s) : state_(s) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if (!waiter_.begin(h, &detail::CompletionState<T>::leave, &state_)) return false;
      std::lock_guard<std::mutex> lock(state_.mutex);
      if (state_.next_running) {  // another next() is parked: ours fails, its stays
        busy_ = true;
        waiter_.satisfy_now();
        return false;
      }
      if (!state_.ready.empty() || state_.handed_out == state_.total) {
        waiter_.satisfy_now();  // unless a cancellation claimed it first
        return false;
      }
      if (!waiter_.start_waiting()) return false;
      state_.next_running = true;
      parked_here_ = true;
      state_.parked = &waiter_;
      return true;
    }
    std::optional<Completed<T>> await_resume() {
      const bool cancelled = waiter_.end();
      std::lock_guard<std::mutex> lock(state_.mutex);
      if (busy_) throw UsageError("Completions::next: another next() is still waiting");
      if (parked_here_) state_.next_running = false;  // only the parked one owns the flag
      if (cancelled) waiter_.throw_cancelled_here();
      if (state_.ready.empty()) return std::nullopt;  // all handed out
      std::optional<Completed<T>> c(std::move(state_.ready.front()));
      state_.ready.pop_front();
      ++state_.handed_out;
      return c;
    }

   private:
    detail::CompletionState<T>& state_;
    detail::Waiter waiter_;
    bool busy_ = false;
    bool parked_here_ = false;
  };

  // co_await next() -> the next finished task, or nullopt once all were handed out.
  NextAwaiter next() { return NextAwaiter(checked_state("next")); }

  // How many tasks were given to as_completed().
  std::size_t size() const { return checked_state("size").total; }

 private:
  template <class U>
  friend Completions<U> as_completed(TaskGroup& group, std::vector<Task<U>> tasks);
  explicit Completions(std::shared_ptr<detail::CompletionState<T>> s) : state_(std::move(s)) {}
  detail::CompletionState<T>& checked_state(const char* what) const {
    if (state_ == nullptr)
      throw UsageError(std::string("Completions::") + what + " on a moved-from Completions");
    return *state_;
  }
  std::shared_ptr<detail::CompletionState<T>> state_;
};

// Spawns `tasks` into `group` and returns their Completions; see the top of this file.
template <class T>
Completions<T> as_completed(TaskGroup& group, std::vector<Task<T>> tasks) {
  for (const Task<T>& t : tasks) detail::require_fresh(t.handle(), "as_completed");
  detail::GroupState& g = group.state();
  // The Completions' hold on the group (released by its destructor); refused, like a spawn,
  // once the group is cancelled or has ended.
  if (g.scope.is_cancelled() || !g.try_add_child())
    throw UsageError("as_completed: the group was cancelled or has ended");
  auto state = std::make_shared<detail::CompletionState<T>>(tasks.size(), g);
  Completions<T> completions(state);
  state->on_group_cancelled.state = state.get();
  state->on_group_cancelled.run = &detail::CompletionState<T>::group_cancelled;
  // Already cancelled (since the check above): the callback does not register and the hold
  // is released here, as the callback would have; marked as run, so that the destructor does
  // not touch the group's scope (the group may end once the hold is gone).
  if (!g.scope.add_callback(state->on_group_cancelled)) {
    // Relaxed: read by remove_callback() on this thread or after a hand-off that orders it.
    state->on_group_cancelled.ran.store(true, std::memory_order_relaxed);
    state->abandon();
  }
  // Every task is accounted for, also when the group is cancelled part-way (the spawn then
  // refuses): a task not spawned ends as Cancelled without starting, as it would have in
  // the cancelled group.
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!g.scope.is_cancelled()) {
      try {
        (void)group.spawn(detail::completion_runner(i, std::move(tasks[i]), state));
        continue;
      } catch (const UsageError&) {
        // We hold the group open, so it has not ended: the spawn saw the cancellation.
      }
    }
    Task<T> never_started = std::move(tasks[i]);  // destroyed here without running
    (void)state->deliver(i, Outcome<T>::from_exception(std::make_exception_ptr(Cancelled{})));
  }
  return completions;
}

}  // namespace weft

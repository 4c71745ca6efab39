// wait: wait until some of a group's tasks have finished, without cancelling anything
// (asyncio.wait).
//
//   std::vector<JoinHandle<Page>> fetches = ...;            // spawned into a TaskGroup
//   WaitResult r = co_await wait(fetches, ReturnWhen::FirstCompleted, 200ms);
//   for (std::size_t i : r.done) use(fetches[i].result());
//   // r.pending: still running; they go on, and their group still awaits them.
//
// Returns once `when` holds:
// - FirstCompleted: at least one task has finished (with a value or an exception);
// - FirstException: a task finished by throwing something other than Cancelled, or all have
//   finished;
// - AllCompleted: all have finished;
// or once `timeout` has passed (no TimeoutError: the result says what is still pending), and
// at once when `when` already holds. `done` and `pending` are indices into `handles`, in
// increasing order, as of the moment the call returns.
// - Cancels nothing, neither on return nor on timeout nor when the caller is cancelled: the
//   tasks belong to their group, which awaits them as usual.
// - If the caller is cancelled while it waits, Cancelled propagates at once.
// - UsageError for an empty vector or an empty (moved-from) handle. `handles` must not be
//   changed while the call runs.
// - Await it from inside the handles' group (its body, a child, or below), or after the
//   group ended: a task outside a running group does not keep it alive.
// Must be awaited from a task running on a weft runtime.
#pragma once

#include <algorithm>
#include <atomic>
#include <coroutine>
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "weft/deadline.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/waiter.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"
#include "weft/task_group.hpp"
#include "weft/timeout.hpp"

namespace weft {

enum class ReturnWhen { FirstCompleted, FirstException, AllCompleted };

struct WaitResult {
  std::vector<std::size_t> done;     // indices of the tasks that have finished
  std::vector<std::size_t> pending;  // indices of those still running
};

namespace detail {

// True when `p`'s task threw something other than Cancelled (it has finished).
bool finished_with_failure(const PromiseBase& p) noexcept;

// What one wait() watches: which handles (by frame) have finished, and the parked task.
// Protocol: the wait registers a GroupState::Listener on each group its handles belong to,
// then counts the handles already finished; a child finishing afterwards is counted by its
// listener call. Both run under `lock`, and `counted` makes a child that is seen both ways
// count once (add_listener()'s handshake guarantees it is seen at least one way). The parked
// task follows the Waiter protocol, with this state as its primitive.
class WaitState {
 public:
  WaitState(ReturnWhen when, std::size_t n) : when_(when), counted_(n, false), total_(n) {}

  void watch(void* frame, std::size_t index) { index_of_[frame] = index; }

  // A child of a watched group has finished. An unwatched one is ignored without touching
  // `child`: its handle may already have destroyed the frame.
  void finished(const PromiseBase& child, void* frame) noexcept {
    Waiter* wake = nullptr;
    {
      std::lock_guard<SpinLock> guard(lock_);
      auto it = index_of_.find(frame);
      if (it == index_of_.end()) return;
      // Watched: our handle keeps the frame alive.
      count_locked(it->second, finished_with_failure(child));
      if (parked_ != nullptr && satisfied_locked() && parked_->claim_for_wake()) {
        wake = parked_;
        parked_ = nullptr;
      }
    }
    if (wake != nullptr) resume_waiter(wake->scheduler, wake->handle);
  }

  void count(std::size_t index, bool failed) noexcept {
    std::lock_guard<SpinLock> guard(lock_);
    count_locked(index, failed);
  }

  class Park {
   public:
    explicit Park(WaitState& s) : state_(s) {}
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if (!waiter_.begin(h, &WaitState::leave, &state_)) return false;
      std::lock_guard<SpinLock> guard(state_.lock_);
      if (state_.satisfied_locked()) {
        waiter_.satisfy_now();
        return false;
      }
      if (!waiter_.start_waiting()) return false;
      state_.parked_ = &waiter_;
      return true;
    }
    void await_resume() {
      if (waiter_.end()) waiter_.throw_cancelled_here();
    }

   private:
    WaitState& state_;
    Waiter waiter_;
  };

 private:
  static void leave(Waiter* w) noexcept {
    auto* self = static_cast<WaitState*>(w->primitive);
    std::lock_guard<SpinLock> guard(self->lock_);
    if (self->parked_ == w) self->parked_ = nullptr;
  }
  void count_locked(std::size_t index, bool failed) noexcept {
    if (counted_[index]) return;
    counted_[index] = true;
    ++done_;
    failed_ = failed_ || failed;
  }
  bool satisfied_locked() const noexcept {
    switch (when_) {
      case ReturnWhen::FirstCompleted: return done_ > 0;
      case ReturnWhen::FirstException: return failed_ || done_ == total_;
      case ReturnWhen::AllCompleted: return done_ == total_;
    }
    return true;
  }

  const ReturnWhen when_;
  SpinLock lock_;
  // Filled before the first listener is registered, read-only afterwards.
  std::unordered_map<void*, std::size_t> index_of_;
  std::vector<bool> counted_;                        // guarded by lock_
  std::size_t done_ = 0;
  const std::size_t total_;
  bool failed_ = false;
  Waiter* parked_ = nullptr;  // guarded by lock_
};

// One registration of a WaitState on one group; holds the group open (a count in its
// `pending`) until it is removed, so that the group cannot end while it is registered.
struct WaitListener : GroupState::Listener {
  WaitListener(WaitState& s, GroupState& g) : Listener{&on_child_finished}, state(&s), group(&g) {}
  static void on_child_finished(GroupState::Listener* self, PromiseBase& child,
                                void* frame) noexcept;
  WaitState* state;
  GroupState* group;
};

// Gives up a count that held `group` open; schedules the group's waiter if that was the last.
void release_group_hold(GroupState& group) noexcept;

// seq_cst: the other side of add_listener()'s handshake (see GroupState::child_finished()).
inline bool handle_finished(const PromiseBase& p) noexcept {
  return (p.handoff.load(std::memory_order_seq_cst) & PromiseBase::kChildFinished) != 0;
}

template <class T>
Task<void> wait_until_satisfied(std::vector<JoinHandle<T>>& handles, WaitState& state) {
  // One listener per distinct group, each holding its group open while registered.
  std::vector<std::unique_ptr<WaitListener>> listeners;
  struct Unregister {
    std::vector<std::unique_ptr<WaitListener>>& ls;
    ~Unregister() {
      for (auto& l : ls) {
        l->group->remove_listener(*l);
        release_group_hold(*l->group);
      }
    }
  } unregister{listeners};
  // The whole map first: listeners read it as soon as the first is registered.
  for (std::size_t i = 0; i < handles.size(); ++i) state.watch(handles[i].frame_address(), i);
  for (std::size_t i = 0; i < handles.size(); ++i) {
    PromiseBase& p = *handles[i].promise_base();
    auto* group = static_cast<GroupState*>(p.joiner);
    const bool known = std::any_of(listeners.begin(), listeners.end(),
                                   [&](const auto& l) { return l->group == group; });
    if (known) continue;
    // Takes the count through the child, atomically with its "not finished" test: a group
    // whose children all finished may have ended and is never touched (the check below
    // sees this one).
    if (!hold_group_through(p)) continue;
    listeners.push_back(std::make_unique<WaitListener>(state, *group));
    group->add_listener(*listeners.back());
  }
  // Children that finished before their listener was registered: counted here (a child that
  // finishes meanwhile may be counted both ways; it counts once).
  for (std::size_t i = 0; i < handles.size(); ++i) {
    const PromiseBase& p = *handles[i].promise_base();
    if (handle_finished(p)) state.count(i, finished_with_failure(p));
  }
  co_await WaitState::Park(state);
}

}  // namespace detail

// co_await wait(handles, when, timeout) -> WaitResult; see the top of this file.
template <class T>
Task<WaitResult> wait(std::vector<JoinHandle<T>>& handles, ReturnWhen when,
                      Duration timeout = Duration::max()) {
  if (handles.empty()) throw UsageError("wait: needs at least one JoinHandle");
  for (const JoinHandle<T>& h : handles)
    if (h.promise_base() == nullptr) throw UsageError("wait: an empty (moved-from) JoinHandle");
  if (timeout > Duration::zero()) {
    detail::WaitState state(when, handles.size());
    if (timeout == Duration::max()) {
      co_await detail::wait_until_satisfied(handles, state);
    } else {
      try {
        co_await weft::timeout(timeout, detail::wait_until_satisfied(handles, state));
      } catch (const TimeoutError&) {
        // The time is up: report what is done so far.
      }
    }
  }
  WaitResult result;
  for (std::size_t i = 0; i < handles.size(); ++i)
    (handles[i].done() ? result.done : result.pending).push_back(i);
  co_return result;
}

}  // namespace weft

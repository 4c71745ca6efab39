// The TaskGroup's protocol: how a group counts its children back in, and how each child's
// frame is handed between the group's run of it and its JoinHandle. (The gather's simpler
// protocol is in join_state.hpp; both share InlineRun.)
//
// Protocol: counting children.
//   A group starts on worker W with an inline run open (InlineRun, join_state.hpp). While W
//   keeps running the chain of symmetric transfers that started the group, a child spawned
//   on W is pushed onto W's deque and counted in a plain integer (`local_spawned`); once the
//   body has ended, the join pops those children back off the bottom of W's deque and runs
//   them itself, counting each that finishes (`local_done`), again without atomics.
//   `pending` (atomic) counts everything else: +1 for a child spawned any other way (from
//   another thread, on W after the inline run ended, or while foreign work sits above the
//   group's children in W's deque), -1 for a child that finishes outside the inline run,
//   +1 for the body if the inline run ends while the body still runs, and +1 while a wait()
//   holds the group open. The inline run holds kInlineRunBias, more than any number of
//   children, so `pending` cannot reach zero while the run is open.
//   The inline run ends
//   - by completion: the body has ended, every child counted inline finished inline (so none
//     was stolen), and `pending` still holds exactly the bias (nothing else in flight): one
//     CAS bias -> 0 ends the group;
//   - by settling: when control returns to W's scheduler loop, or when the join's next child
//     is not at the bottom of W's deque, the run adds local_spawned - local_done - bias (+1
//     while the body runs) to `pending`.
//   Whoever brings `pending` to zero resumes the waiter. Zero means the group has ended: a
//   spawn that finds it there fails.
//
// Protocol: a child's frame (PromiseBase::handoff, one atomic byte per child).
//   The frame is shared by the group's run of the child and its JoinHandle; whichever lets go
//   second destroys it. The child sets kChildFinished with one fetch_or when it ends; the
//   handle's drop sets kHandleDropped only if it found the child unfinished (a handle
//   dropped after its child finished destroys the frame with no locked instruction).
//   - join(): the joiner parks a Waiter (waiter.hpp) in group_child.join_waiter and sets
//     kJoinWaiting while the waiter is still in Setup, and only then makes it Waiting (after
//     that it may be resumed and freed at once). The finishing child that sees kJoinWaiting
//     claims the waiter (from Setup or Waiting), wakes it only if it was Waiting (one claimed
//     in Setup goes on by itself), then clears the bit (its last touch of the waiter). A
//     join claimed in Setup, and a cancelled join, clear kJoinWaiting themselves while the
//     child has not finished, else wait for the child to clear it (join_leave()).
//   - Supervised children that fail: the failure belongs to the handle. If the handle was
//     dropped before the child finished, nobody can read it: it fails the group like a
//     plain child's failure. Otherwise the frame goes on the group's `supervised_failures`
//     list, and the group's end sets kGroupEnded on each. A handle that lets go first sets
//     kHandleDropped (plus kObserved when something read the failure) and leaves the frame
//     to the group's end, which reports an unobserved failure in the group's ExceptionGroup;
//     a handle that lets go after kGroupEnded destroys the frame and reports an unobserved
//     failure through the unobserved-error hook.
//   - wait() takes a count of a running group through one of its unfinished children: it
//     sets kPinning (CAS, only while kChildFinished is clear), takes the count, clears it.
//     A child that ends while kPinning is set waits for it to clear before it gives up its
//     own count, so the group cannot end and be freed under the pin.
//
// Invariants.
//   - `owner` is fixed at construction. `inline_run`, the local counts, `in_deque` and
//     `body_running` are touched only on W while the run is open: every other thread
//     compares `owner` with its own worker first and never reads them.
//   - The children spawned inline and not yet popped by the join sit at W's deque indices
//     below base + in_deque (the lowest ones possibly taken by thieves, which steal from the
//     top). A spawn counts inline only when W's bottom is exactly base + in_deque, and the
//     join pops only under the same test (Worker::pop_own_child()).
//   - Until the run ends, `pending` >= bias - (children stolen and finished) > 0: the
//     group's frame cannot go away while W may still touch it.
//   - A child touches its frame after the fetch_or that sets kChildFinished only when the
//     value it read says the handle had let go (the frame is then its own), or to wake its
//     joiner (the handle cannot let go while a join() on it runs).
#pragma once

#include <atomic>
#include <cassert>
#include <coroutine>
#include <exception>
#include <mutex>
#include <vector>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/join_state.hpp"
#include "weft/detail/worker.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"

namespace weft::detail {

// Reports a supervised child's failure that nothing read before its handle let go, after its
// group ended (the unobserved-error hook; task_group.cpp).
void report_unobserved_error(const std::exception_ptr& e) noexcept;

// What spawn() throws into a group that is cancelled or has ended (a UsageError). When the
// group was cancelled from outside, a body or child that lets it escape did not fail for
// real: the group's end drops it in favour of Cancelled.
class SpawnRefused : public UsageError {
 public:
  using UsageError::UsageError;
};
// True when `e` is a SpawnRefused (a rethrow: only on the path of a cancelled group's end).
bool is_spawn_refusal(const std::exception_ptr& e) noexcept;

inline void destroy_frame(void* frame) noexcept {
  std::coroutine_handle<>::from_address(frame).destroy();
}

struct GroupState;
// The Joiner of a group's body: its end starts the join.
struct BodyJoiner : Joiner {
  GroupState* group;
};

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
  // The body's final step: the join begins (task_group.cpp).
  static std::coroutine_handle<> body_finished(Joiner* self, PromiseBase& body,
                                               void* frame) noexcept;

  // Children (or the body) that failed for real (never Cancelled). The first cancels the
  // group.
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

  // Wires a fresh task in as a child of this group and starts it. The caller has checked
  // that the group takes children (`inline_spawn`, or a count taken by try_add_child()).
  void start_child(PromiseBase& p, void* frame, bool supervised, Worker* w, bool inline_spawn) {
    ::new (static_cast<void*>(&p.group_child)) PromiseBase::GroupChildPart();
    p.is_group_child = true;
    p.group_child.scope.adopt_parent(&scope);
    p.group_child.supervised = supervised;
    p.joiner = this;
    p.cancel = &p.group_child.scope;
    p.scope_fixed = true;
    // The spawning task's bindings (none when spawned from outside a task).
    p.context = tl_current_task != nullptr ? tl_current_task->context : nullptr;
    if (inline_spawn) {
      ++local_spawned;
      ++in_deque;
      w->push_child(frame);
    } else {
      schedule_spawned(frame);
    }
  }

  // The body has ended (any thread): where control goes next.
  std::coroutine_handle<> body_ended() noexcept {
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
    if (in_deque > 0) {
      if (void* next = w.pop_own_child(base + in_deque)) {
        --in_deque;
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

  // A child (or the body, or a hold) counted in `pending` is done: the last one resumes the
  // waiter.
  std::coroutine_handle<> release_one() noexcept {
    // acq_rel: the release publishes this child's writes; the last decrement's acquire sees
    // all of them (and `waiter`) before resuming the group.
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) return waiter;
    return std::noop_coroutine();
  }

  // Takes one more count for a child spawned outside the inline run (or a hold); false once
  // the count reached zero (ended).
  bool try_add_child() noexcept {
    std::int64_t n = pending.load(std::memory_order_relaxed);
    do {
      if (n == 0) return false;
      // Relaxed: the child's frame is published by its push; a spawner that holds no count
      // of its own (another thread) is told apart by the zero test.
    } while (!pending.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }

  // The group's end, on the thread that resumes the waiter, once `pending` reached zero:
  // hands the frames of failed supervised children over to their handles (see the
  // protocol); the failures nobody will read join `failures`.
  void end_supervised() noexcept;

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
  detail::atomic<std::int64_t> pending{kInlineRunBias};
  std::coroutine_handle<> waiter;       // written before the body's count is given up
  SpinLock failures_lock;
  std::vector<std::exception_ptr> failures;      // guarded by failures_lock
  struct FailedChild {
    PromiseBase* promise;
    void* frame;
  };
  std::vector<FailedChild> supervised_failures;  // guarded by failures_lock
  SpinLock listeners_lock;
  Listener* listeners = nullptr;  // guarded by listeners_lock
  // True while a listener is registered: one load on every child's finish.
  detail::atomic<bool> has_listeners{false};

 private:
  static std::coroutine_handle<> settle_group(InlineRun* self) noexcept {
    return static_cast<GroupState*>(self)->settle();
  }
  // Pushes a spawned child where it will run: the current worker's deque, or the runtime's
  // injection queue from any other thread.
  void schedule_spawned(void* frame);
};

// wait()'s way into a running group: takes a count of the group of `child` (which must be
// one of its children whose handle is alive) unless the child has finished, in which case
// the group may have ended and is not touched. True when a count was taken.
bool hold_group_through(PromiseBase& child) noexcept;

// JoinHandle's end: lets go of the child's frame (see the protocol). `observed`: something
// read the child's outcome through the handle.
void drop_child_frame(PromiseBase& child, void* frame, bool observed) noexcept;

// The `leave` of a join()'s Waiter (waiter.hpp): unregisters it from the child, or waits
// until the finishing child is done with it.
struct Waiter;
void join_leave(Waiter* self) noexcept;

}  // namespace weft::detail

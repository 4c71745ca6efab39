// The out-of-line parts of TaskGroup's protocol (detail/group_state.hpp).
#include <atomic>
#include <cstdio>
#include <exception>
#include <typeinfo>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/waiter.hpp"
#include "weft/task_group.hpp"

namespace weft {
namespace {
std::atomic<UnobservedErrorHandler> g_unobserved_handler{nullptr};

void print_unobserved(std::exception_ptr e) noexcept {
  const char* what = "an exception that is not a std::exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    what = ex.what();
  } catch (...) {
  }
  std::fprintf(stderr,
               "weft: a supervised task failed and nothing read its JoinHandle before it was "
               "dropped: %s\n",
               what);
}
}  // namespace

void set_unobserved_error_handler(UnobservedErrorHandler handler) noexcept {
  // Release/acquire: a handler installed before a failure is reported sees its own setup.
  g_unobserved_handler.store(handler, std::memory_order_release);
}

namespace detail {

void report_unobserved_error(const std::exception_ptr& e) noexcept {
  UnobservedErrorHandler h = g_unobserved_handler.load(std::memory_order_acquire);
  (h != nullptr ? h : &print_unobserved)(e);
}

namespace {
bool is_supervised_failure(const PromiseBase& child) noexcept {
  return child.group_child.supervised && child.exception != nullptr &&
         !is_cancelled_exception(child.exception);
}
}  // namespace

bool is_spawn_refusal(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const SpawnRefused&) {
    return true;
  } catch (...) {
    return false;
  }
}

std::coroutine_handle<> GroupState::child_finished(Joiner* self, PromiseBase& child,
                                                   void* frame) noexcept {
  auto* group = static_cast<GroupState*>(self);
  // Nothing below the child can link into its scope any more, and the group (the scope's
  // parent) may end before the handle lets go of the frame that holds it.
  child.group_child.scope.leave_parent();
  const bool supervised_failure = is_supervised_failure(child);
  if (child.exception && !child.group_child.supervised) group->record_failure(child.exception);
  // seq_cst (the same `lock or` as acq_rel): the release publishes the result to done(),
  // drop() and join(); the acquire orders a drop or a join registration that came first
  // before our reads of the frame; and with the load of has_listeners below it is one side of
  // a Dekker handshake with add_listener() + done(): a wait() either sees this child
  // finished or is called.
  const std::uint8_t before =
      child.handoff.fetch_or(PromiseBase::kChildFinished, std::memory_order_seq_cst);
  if ((before & PromiseBase::kPinning) != 0) [[unlikely]] {
    // A wait() is taking a count of the group through us (it holds the handle, so the frame
    // is alive): the group must not end under it. Acquire pairs with its clearing release.
    while ((child.handoff.load(std::memory_order_acquire) & PromiseBase::kPinning) != 0) cpu_relax();
  }
  if ((before & PromiseBase::kJoinWaiting) != 0) [[unlikely]] {
    // The joiner holds the handle while it waits: the frame is alive until we clear the bit,
    // and so is the waiter (a joiner we or a cancellation claimed while it was still in Setup
    // waits for the bit in join_leave()).
    Waiter* joiner = child.group_child.join_waiter;
    const bool ours = joiner->claim_for_wake_from_setup() == Waiter::kWaiting;
    Scheduler* scheduler = joiner->scheduler;
    std::coroutine_handle<> resume = joiner->handle;
    // Release: our last touch of the waiter; a cancelled join waits for this (join_leave()).
    child.handoff.fetch_and(static_cast<std::uint8_t>(~PromiseBase::kJoinWaiting),
                            std::memory_order_release);
    if (ours) resume_waiter(scheduler, resume);
  }
  if (group->has_listeners.load(std::memory_order_seq_cst)) [[unlikely]] {
    std::lock_guard<SpinLock> guard(group->listeners_lock);
    for (Listener* l = group->listeners; l != nullptr; l = l->next)
      l->child_finished(l, child, frame);
  }
  if (supervised_failure) [[unlikely]] {
    if ((before & PromiseBase::kHandleDropped) != 0) {
      // Nobody can read it any more: it fails the group like any child's failure.
      group->record_failure(child.exception);
      std::coroutine_handle<>::from_address(frame).destroy();
    } else {
      std::lock_guard<SpinLock> guard(group->failures_lock);
      group->supervised_failures.push_back({&child, frame});
    }
  } else if ((before & PromiseBase::kHandleDropped) != 0) {
    // The handle let go first: the frame is ours.
    std::coroutine_handle<>::from_address(frame).destroy();
  }
  Worker* w = tl_worker;
  if (group->inline_on(w)) {
    ++group->local_done;
    return group->next_inline(*w);
  }
  // After this the group may end and its frame go away.
  return group->release_one();
}

std::coroutine_handle<> GroupState::body_finished(Joiner* self, PromiseBase& body,
                                                  void*) noexcept {
  GroupState* group = static_cast<BodyJoiner*>(self)->group;
  if (body.exception) group->record_failure(body.exception);
  return group->body_ended();
}

void GroupState::end_supervised() noexcept {
  // No lock: every child has finished (the join that resumed us acquired their writes), and
  // from here the handles only read kGroupEnded.
  for (auto [child, frame] : supervised_failures) {
    // acq_rel: pairs with the handle's fetch_or in JoinHandle::drop(): exactly one of us
    // sees the other's bit, and that one owns the frame.
    const std::uint8_t before =
        child->handoff.fetch_or(PromiseBase::kGroupEnded, std::memory_order_acq_rel);
    if ((before & PromiseBase::kHandleDropped) != 0) {
      if ((before & PromiseBase::kObserved) == 0) failures.push_back(child->exception);
      destroy_frame(frame);
    }
  }
  supervised_failures.clear();
}

void GroupState::schedule_spawned(void* frame) {
  Worker* w = tl_worker;
  if (w != nullptr && &w->scheduler == scheduler) bump(w->counters.tasks_spawned);
  schedule(*scheduler, std::coroutine_handle<>::from_address(frame));
}

bool hold_group_through(PromiseBase& child) noexcept {
  std::uint8_t v = child.handoff.load(std::memory_order_relaxed);
  for (;;) {
    if ((v & PromiseBase::kChildFinished) != 0) return false;  // the group may be gone
    if ((v & PromiseBase::kPinning) != 0) {  // another wait() pins through it: take turns
      cpu_relax();
      v = child.handoff.load(std::memory_order_relaxed);
      continue;
    }
    // Acquire: pairs with the release of a previous pinner; relaxed on failure (retried).
    if (child.handoff.compare_exchange_weak(v, v | PromiseBase::kPinning,
                                            std::memory_order_acquire,
                                            std::memory_order_relaxed))
      break;
  }
  // The child cannot finish past its fetch_or while we pin: its group is alive.
  const bool held = static_cast<GroupState*>(child.joiner)->try_add_child();
  // Release: pairs with the child's wait in child_finished().
  child.handoff.fetch_and(static_cast<std::uint8_t>(~PromiseBase::kPinning),
                          std::memory_order_release);
  return held;
}

void drop_child_frame(PromiseBase& child, void* frame, bool observed) noexcept {
  detail::atomic<std::uint8_t>& handoff = child.handoff;
  // Acquire (both): pairs with the child's fetch_or; it no longer touches the frame.
  std::uint8_t state = handoff.load(std::memory_order_acquire);
  const bool finished = (state & PromiseBase::kChildFinished) != 0;
  if (finished && !is_supervised_failure(child)) {
    // The common case: the child decided before us (it saw no drop) and left us the frame.
    destroy_frame(frame);
    return;
  }
  const std::uint8_t mark = static_cast<std::uint8_t>(
      PromiseBase::kHandleDropped | (observed ? std::uint8_t{PromiseBase::kObserved} : std::uint8_t{0}));
  // acq_rel: one side of the hand-off with child_finished() (and end_supervised()).
  state = handoff.fetch_or(mark, std::memory_order_acq_rel);
  if ((state & PromiseBase::kChildFinished) == 0) return;  // the child will destroy it
  if (!is_supervised_failure(child)) {
    destroy_frame(frame);
    return;
  }
  // A supervised failure: its group's end owns the frame until it sets kGroupEnded.
  if ((state & PromiseBase::kGroupEnded) == 0) return;
  if (!observed) report_unobserved_error(child.exception);
  destroy_frame(frame);
}

void join_leave(Waiter* self) noexcept {
  auto& child = *static_cast<PromiseBase*>(self->primitive);
  std::uint8_t v = child.handoff.load(std::memory_order_acquire);
  for (;;) {
    if ((v & PromiseBase::kJoinWaiting) == 0) return;  // the child is done with the waiter
    if ((v & PromiseBase::kChildFinished) != 0) {
      // The child is waking us (its claim fails: we were cancelled): wait for its last touch.
      cpu_relax();
      v = child.handoff.load(std::memory_order_acquire);
      continue;
    }
    // acq_rel: unregisters before the child's fetch_or could see the bit.
    if (child.handoff.compare_exchange_weak(
            v, static_cast<std::uint8_t>(v & ~PromiseBase::kJoinWaiting),
            std::memory_order_acq_rel, std::memory_order_acquire))
      return;
  }
}

}  // namespace detail
}  // namespace weft

// The out-of-line parts of TaskGroup's protocol.
#include "weft/task_group.hpp"

namespace weft::detail {

std::coroutine_handle<> GroupState::child_finished(Joiner* self, PromiseBase& child,
                                                   void* frame) noexcept {
  auto* group = static_cast<GroupState*>(self);
  if (child.exception) group->record_failure(child.exception);
  // seq_cst (the same `lock xadd` as acq_rel): the release publishes the result to
  // JoinHandle::done() and drop(); the acquire orders a drop that came first before the
  // destruction; and with the load of has_listeners below it is one side of a Dekker
  // handshake with add_listener() + done(): a wait() either sees this child finished or is
  // called. (Each bit is set once, so adding is or-ing: no compare-exchange loop.)
  const std::uint8_t before =
      child.handoff.fetch_add(PromiseBase::kChildFinished, std::memory_order_seq_cst);
  if (group->has_listeners.load(std::memory_order_seq_cst)) [[unlikely]] {
    std::lock_guard<SpinLock> guard(group->listeners_lock);
    for (Listener* l = group->listeners; l != nullptr; l = l->next)
      l->child_finished(l, child, frame);
  }
  // After the fetch_add, the handle may destroy the frame.
  if ((before & PromiseBase::kHandleDropped) != 0)
    std::coroutine_handle<>::from_address(frame).destroy();
  Worker* w = tl_worker;
  if (group->inline_on(w)) {
    ++group->local_done;
    return group->next_inline(*w);
  }
  // After this the group may end and its frame go away.
  return group->release_one();
}

void schedule_spawned(Scheduler& s, std::coroutine_handle<> h) {
  Worker* w = tl_worker;
  if (w != nullptr && &w->scheduler == &s) bump(w->counters.tasks_spawned);
  schedule(s, h);
}

}  // namespace weft::detail

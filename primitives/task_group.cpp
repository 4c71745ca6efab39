// The out-of-line parts of TaskGroup's protocol.
#include "weft/task_group.hpp"

namespace weft::detail {

std::coroutine_handle<> GroupState::child_finished(Joiner* self, PromiseBase& child,
                                                   void* frame) noexcept {
  auto* group = static_cast<GroupState*>(self);
  if (child.exception) group->record_failure(child.exception);
  // acq_rel: the release publishes the result to JoinHandle::done() and drop(); the acquire
  // orders a drop that came first before the destruction. After this, the handle may
  // destroy the frame. (Each bit is set once, so adding is or-ing: one `lock xadd` where
  // fetch_or would be a compare-exchange loop.)
  if ((child.handoff.fetch_add(PromiseBase::kChildFinished, std::memory_order_acq_rel) &
       PromiseBase::kHandleDropped) != 0)
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

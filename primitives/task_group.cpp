// The out-of-line parts of TaskGroup's protocol.
#include "weft/task_group.hpp"

namespace weft::detail {

std::coroutine_handle<> GroupState::child_finished(Joiner* self, PromiseBase& child,
                                                   void* frame) noexcept {
  auto* group = static_cast<GroupState*>(self);
  if (child.exception) group->record_failure(child.exception);
  // Release pairs with the acquire in JoinHandle::done().
  child.finished.store(true, std::memory_order_release);
  // acq_rel: see PromiseBase::owners. After this the handle may destroy the frame.
  if (child.owners.fetch_sub(1, std::memory_order_acq_rel) == 1)
    std::coroutine_handle<>::from_address(frame).destroy();
  // After this the group may end and its frame go away.
  return group->release_one();
}

void schedule_spawned(Scheduler& s, std::coroutine_handle<> h) {
  Worker* w = tl_worker;
  if (w != nullptr && &w->scheduler == &s) bump(w->counters.tasks_spawned);
  schedule(s, h);
}

}  // namespace weft::detail

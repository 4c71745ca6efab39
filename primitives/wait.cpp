// The out-of-line parts of wait() (wait.hpp).
#include "weft/wait.hpp"

#include "weft/detail/worker.hpp"

namespace weft::detail {

bool finished_with_failure(const PromiseBase& p) noexcept {
  return p.exception != nullptr && !is_cancelled_exception(p.exception);
}

void WaitListener::on_child_finished(GroupState::Listener* self, PromiseBase& child,
                                     void* frame) noexcept {
  auto* l = static_cast<WaitListener*>(self);
  l->state->finished(child, frame);
}

void release_group_hold(GroupState& group) noexcept {
  std::coroutine_handle<> waiter = group.release_one();
  if (waiter != std::noop_coroutine()) schedule(*group.scheduler, waiter);
}

}  // namespace weft::detail

#include "weft/detail/waiter.hpp"

namespace weft::detail {

bool Waiter::notify() noexcept {
  std::uint8_t expected = kWaiting;
  if (state.compare_exchange_strong(expected, kNotified, std::memory_order_acq_rel)) {
    resume_waiter(scheduler, handle);
    return true;
  }
  if (expected == kSetup &&
      state.compare_exchange_strong(expected, kNotified, std::memory_order_acq_rel))
    return true;  // finish_suspend() fails and the task goes on by itself
  // Setup raced to Waiting in between: retry the first transition.
  if (expected == kWaiting) return notify();
  return false;  // cancelled
}

void Waiter::on_cancel(CancelCallbackNode* node) noexcept {
  auto* w = static_cast<Waiter*>(node);
  std::uint8_t expected = kWaiting;
  if (w->state.compare_exchange_strong(expected, kCancelled, std::memory_order_acq_rel)) {
    w->leave(w);
    resume_waiter(w->scheduler, w->handle);
    return;
  }
  if (expected == kSetup &&
      w->state.compare_exchange_strong(expected, kCancelled, std::memory_order_acq_rel)) {
    w->leave(w);  // finish_suspend() fails and the task goes on by itself
    return;
  }
  if (expected == kWaiting) on_cancel(node);  // Setup became Waiting in between: retry
}

void resume_waiter(Scheduler* s, std::coroutine_handle<> h) {
  if (s != nullptr) schedule(*s, h);
  else h.resume();
}

}  // namespace weft::detail

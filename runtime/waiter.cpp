#include "weft/detail/waiter.hpp"

namespace weft::detail {

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
    w->leave(w);  // start_waiting() fails and the task goes on by itself
    return;
  }
  if (expected == kWaiting) on_cancel(node);  // Setup became Waiting in between: retry
}

void resume_waiter(Scheduler* s, std::coroutine_handle<> h) {
  if (s != nullptr) schedule(*s, h);
  else h.resume();
}

}  // namespace weft::detail

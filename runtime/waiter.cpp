#include "weft/detail/waiter.hpp"

namespace weft::detail {

void Waiter::on_cancel(CancelCallbackNode* node) noexcept {
  auto* w = static_cast<Waiter*>(node);
  // Claim the waiter unless the primitive has notified it already.
  std::uint8_t seen = w->state.load(std::memory_order_acquire);
  while ((seen == kSetup || seen == kWaiting) &&
         !w->state.compare_exchange_weak(seen, kCancelled, std::memory_order_acq_rel)) {
  }
  const bool claimed = seen == kSetup || seen == kWaiting;
  // A claimed Setup waiter was never linked (its start_waiting() fails and the task goes on
  // by itself); leave() tolerates that.
  if (claimed) w->leave(w);
  Scheduler* const scheduler = w->scheduler;
  const std::coroutine_handle<> handle = w->handle;
  // The last touch of the node (marks_own_completion): release pairs with the acquire in
  // remove_callback(), so the resumed task may free it at once, wherever it runs.
  w->ran.store(true, std::memory_order_release);
  if (claimed && seen == kWaiting) resume_waiter(scheduler, handle);
}

void resume_waiter(Scheduler* s, std::coroutine_handle<> h) {
  if (s != nullptr) schedule(*s, h);
  else h.resume();
}

}  // namespace weft::detail

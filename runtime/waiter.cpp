#include "weft/detail/waiter.hpp"

#include <cstdio>
#include <exception>
#include <thread>

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

void drain_cancelled_waiters_or_die(std::unique_lock<std::mutex>& lock,
                                    Waiter* const* head_of_queue, const char* what) noexcept {
  auto only_cancelled_queued = [&] {
    for (Waiter* w = *head_of_queue; w != nullptr; w = w->queue_next)
      // Acquire pairs with the acq_rel CAS in on_cancel(): the claim is seen before leave().
      if (w->state.load(std::memory_order_acquire) != Waiter::kCancelled) return false;
    return *head_of_queue != nullptr;
  };
  while (only_cancelled_queued()) {
    lock.unlock();
    std::this_thread::yield();
    lock.lock();
  }
  if (*head_of_queue != nullptr) {
    std::fprintf(stderr, "weft: %s was destroyed while tasks were waiting on it\n", what);
    std::terminate();
  }
}

}  // namespace weft::detail

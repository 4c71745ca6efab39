#include "weft/event.hpp"

namespace weft {

Event::~Event() {
  std::unique_lock<std::mutex> lock(mutex_);
  detail::drain_cancelled_waiters_or_die(lock, &head_, "an Event");
}

bool Event::is_set() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return set_;
}

void Event::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  set_ = false;
}

bool Event::enqueue(detail::Waiter& w) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (set_) {
    w.satisfy_now();  // unless a cancellation claimed it first: then it sees Cancelled
    return false;
  }
  if (!w.start_waiting()) return false;  // cancelled during begin(): never queued
  w.queue_prev = tail_;
  w.queue_next = nullptr;
  if (tail_ != nullptr) tail_->queue_next = &w;
  else head_ = &w;
  tail_ = &w;
  w.queued = true;
  return true;
}

void Event::leave(detail::Waiter* w) noexcept {
  auto* self = static_cast<Event*>(w->primitive);
  std::lock_guard<std::mutex> lock(self->mutex_);
  self->leave_locked(w);
}

void Event::leave_locked(detail::Waiter* w) noexcept {
  auto* self = this;
  if (!w->queued) return;
  if (w->queue_prev != nullptr) w->queue_prev->queue_next = w->queue_next;
  else self->head_ = w->queue_next;
  if (w->queue_next != nullptr) w->queue_next->queue_prev = w->queue_prev;
  else self->tail_ = w->queue_prev;
  w->queued = false;
}

void Event::set() {
  detail::Waiter* woken = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    set_ = true;
    for (detail::Waiter* w = head_; w != nullptr;) {
      detail::Waiter* next = w->queue_next;
      // Queued waiters are Waiting or Cancelled.
      if (w->claim_for_wake()) {
        leave_locked(w);
        w->queue_next = woken;  // ours until scheduled
        woken = w;
      }  // else Cancelled: stays queued, its on_cancel unlinks it
      w = next;
    }
  }
  while (woken != nullptr) {
    detail::Waiter* next = woken->queue_next;
    detail::resume_waiter(woken->scheduler, woken->handle);
    woken = next;
  }
}

}  // namespace weft

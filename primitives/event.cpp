#include "weft/event.hpp"

namespace weft {

Event::~Event() {
  std::unique_lock<std::mutex> lock(mutex_);
  detail::drain_cancelled_waiters_or_die(lock, waiters_, "an Event");
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
  waiters_.push_back(w);
  return true;
}

void Event::leave(detail::Waiter* w) noexcept {
  auto* self = static_cast<Event*>(w->primitive);
  std::lock_guard<std::mutex> lock(self->mutex_);
  self->waiters_.remove(*w);
}

void Event::set() {
  detail::Waiter* woken = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    set_ = true;
    // Cancelled waiters stay queued: their leave() unlinks them.
    woken = waiters_.claim_all();
  }
  detail::resume_claimed(woken);
}

}  // namespace weft

#include "weft/event.hpp"

#include <cstdio>
#include <exception>

namespace weft {

Event::~Event() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (head_ != nullptr) {
    std::fputs("weft: an Event was destroyed while tasks were waiting on it\n", stderr);
    std::terminate();
  }
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
  if (set_) return false;
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
  if (!w->queued) return;
  if (w->queue_prev != nullptr) w->queue_prev->queue_next = w->queue_next;
  else self->head_ = w->queue_next;
  if (w->queue_next != nullptr) w->queue_next->queue_prev = w->queue_prev;
  else self->tail_ = w->queue_prev;
  w->queued = false;
}

void Event::set() {
  detail::Waiter* woken;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    set_ = true;
    woken = head_;
    head_ = tail_ = nullptr;
    for (detail::Waiter* w = woken; w != nullptr; w = w->queue_next) w->queued = false;
  }
  // Outside the lock: notify() may resume a task inline, which may touch this Event. Read
  // `next` first: a woken waiter's frame may be gone once notify() returns.
  while (woken != nullptr) {
    detail::Waiter* next = woken->queue_next;
    woken->notify();
    woken = next;
  }
}

}  // namespace weft

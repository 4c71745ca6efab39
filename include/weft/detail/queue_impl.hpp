// The typed half of weft::Queue<T>: the ring of items and the push/pop awaiters. Included at
// the end of weft/queue.hpp; the protocol and its invariants are at the top of
// weft/detail/queue_core.hpp.
#pragma once

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <mutex>
#include <new>
#include <optional>
#include <utility>

namespace weft {

// The awaitable of Queue::push(). Not movable: co_await it where push() returns it.
template <class T>
class Queue<T>::PushAwaiter {
 public:
  PushAwaiter(Queue& q, T& value) noexcept : queue_(q), value_(value) {}
  PushAwaiter(const PushAwaiter&) = delete;
  PushAwaiter& operator=(const PushAwaiter&) = delete;
  ~PushAwaiter() {}  // the Waiter (slow path only) is trivially destructible

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    promise_ = detail::weft_promise_of(h);
    // The level-triggered pull check first: Cancelled wins over everything.
    if (promise_ != nullptr && promise_->cancel != nullptr && promise_->cancel->is_cancelled())
        [[unlikely]] {
      how_ = How::kCancelledEarly;
      return false;
    }
    detail::Waiter* woken = nullptr;
    {
      std::lock_guard<detail::SpinLock> lock(queue_.lock_);
      if (queue_.closed_.load(std::memory_order_relaxed)) [[unlikely]] {
        how_ = How::kClosed;
        return false;
      }
      if (queue_.can_push_locked()) [[likely]] {
        woken = queue_.push_locked(value_);
        how_ = How::kDone;
      }
    }
    if (how_ == How::kDone) [[likely]] {
      detail::resume_claimed(woken);
      return false;
    }
    return wait_slow(h);
  }

  void await_resume() {
    if (how_ == How::kDone) [[likely]]
      return;
    if (how_ == How::kCancelledEarly) {
      promise_->saw_cancelled = true;
      detail::throw_cancelled();
    }
    if (how_ == How::kClosed) throw QueueClosed();
    if (waiter_.end()) waiter_.throw_cancelled_here();
    if (waiter_.closed) throw QueueClosed();
  }

 private:
  enum class How : std::uint8_t { kWaited, kDone, kCancelledEarly, kClosed };

  template <class P>
  bool wait_slow(std::coroutine_handle<P> h) {
    ::new (static_cast<void*>(&waiter_)) PushWaiter();
    waiter_.value = &value_;
    // false: already cancelled, the waiter is Cancelled and end() says so.
    if (!waiter_.begin(h, &Queue::leave_push, &queue_)) return false;
    detail::Waiter* woken = nullptr;
    bool park = false;
    {
      std::lock_guard<detail::SpinLock> lock(queue_.lock_);
      if (queue_.closed_.load(std::memory_order_relaxed)) {
        waiter_.closed = true;
        waiter_.satisfy_now();  // fails if a cancellation won: then Cancelled
      } else if (queue_.can_push_locked()) {
        // Claim ourselves before moving: a cancellation that won keeps the item with us.
        if (waiter_.satisfy_now()) woken = queue_.push_locked(value_);
      } else if (waiter_.start_waiting()) {
        queue_.pushers_.push_back(waiter_);
        park = true;
      }
      assert(queue_.invariants_hold_locked());
    }
    // If parked, the task may already run elsewhere: only locals from here on.
    detail::resume_claimed(woken);
    return park;
  }

  Queue& queue_;
  T& value_;
  detail::PromiseBase* promise_ = nullptr;
  How how_ = How::kWaited;
  union {
    PushWaiter waiter_;  // constructed by wait_slow() only
  };
};

// The awaitable of Queue::pop(). Not movable: co_await it where pop() returns it.
template <class T>
class Queue<T>::PopAwaiter {
 public:
  explicit PopAwaiter(Queue& q) noexcept : queue_(q) {}
  PopAwaiter(const PopAwaiter&) = delete;
  PopAwaiter& operator=(const PopAwaiter&) = delete;
  ~PopAwaiter() {}

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    promise_ = detail::weft_promise_of(h);
    if (promise_ != nullptr && promise_->cancel != nullptr && promise_->cancel->is_cancelled())
        [[unlikely]] {
      how_ = How::kCancelledEarly;
      return false;
    }
    detail::Waiter* woken = nullptr;
    {
      std::lock_guard<detail::SpinLock> lock(queue_.lock_);
      if (queue_.size_.load(std::memory_order_relaxed) != 0) [[likely]] {
        woken = queue_.pop_locked(result_);
        how_ = How::kDone;
      } else if (queue_.closed_.load(std::memory_order_relaxed)) {
        how_ = How::kDone;  // closed and drained: nullopt
      }
    }
    if (how_ == How::kDone) [[likely]] {
      detail::resume_claimed(woken);
      return false;
    }
    return wait_slow(h);
  }

  std::optional<T> await_resume() {
    if (how_ == How::kCancelledEarly) [[unlikely]] {
      promise_->saw_cancelled = true;
      detail::throw_cancelled();
    }
    // Notified with an item (or closed: none) wins over a cancellation that came later.
    if (how_ == How::kWaited && waiter_.end()) waiter_.throw_cancelled_here();
    return std::move(result_);
  }

 private:
  enum class How : std::uint8_t { kWaited, kDone, kCancelledEarly };

  template <class P>
  bool wait_slow(std::coroutine_handle<P> h) {
    ::new (static_cast<void*>(&waiter_)) PopWaiter();
    waiter_.out = &result_;
    if (!waiter_.begin(h, &Queue::leave_pop, &queue_)) return false;
    detail::Waiter* woken = nullptr;
    bool park = false;
    {
      std::lock_guard<detail::SpinLock> lock(queue_.lock_);
      if (queue_.size_.load(std::memory_order_relaxed) != 0) {
        // Claim ourselves before taking: a cancellation that won leaves the item queued.
        if (waiter_.satisfy_now()) woken = queue_.pop_locked(result_);
      } else if (queue_.closed_.load(std::memory_order_relaxed)) {
        waiter_.satisfy_now();  // nullopt, unless a cancellation won
      } else if (waiter_.start_waiting()) {
        queue_.poppers_.push_back(waiter_);
        park = true;
      }
      assert(queue_.invariants_hold_locked());
    }
    detail::resume_claimed(woken);
    return park;
  }

  Queue& queue_;
  std::optional<T> result_;  // written by a pusher that claimed the waiter, under lock_
  detail::PromiseBase* promise_ = nullptr;
  How how_ = How::kWaited;
  union {
    PopWaiter waiter_;
  };
};

template <class T>
Queue<T>::Queue(std::size_t capacity)
    : detail::QueueCore(capacity), ring_(std::make_unique<Slot[]>(capacity)) {}

template <class T>
Queue<T>::~Queue() {
  drain_or_die();
  std::size_t n = size_.load(std::memory_order_relaxed);
  for (std::size_t i = head_; n > 0; --n) {
    item(i)->~T();
    if (++i == capacity_) i = 0;
  }
}

template <class T>
typename Queue<T>::PushAwaiter Queue<T>::push(T&& value) noexcept {
  return PushAwaiter(*this, value);
}

template <class T>
typename Queue<T>::PopAwaiter Queue<T>::pop() noexcept {
  return PopAwaiter(*this);
}

template <class T>
bool Queue<T>::try_push(T& value) {
  detail::Waiter* woken = nullptr;
  {
    std::lock_guard<detail::SpinLock> lock(lock_);
    if (closed_.load(std::memory_order_relaxed)) [[unlikely]]
      throw_closed();
    if (!can_push_locked()) return false;
    woken = push_locked(value);
  }
  detail::resume_claimed(woken);
  return true;
}

template <class T>
std::optional<T> Queue<T>::try_pop() noexcept {
  std::optional<T> out;
  detail::Waiter* woken = nullptr;
  {
    std::lock_guard<detail::SpinLock> lock(lock_);
    if (size_.load(std::memory_order_relaxed) == 0) return out;
    woken = pop_locked(out);
  }
  detail::resume_claimed(woken);
  return out;
}

template <class T>
detail::Waiter* Queue<T>::push_locked(T& value) noexcept {
  assert(can_push_locked() && !closed_.load(std::memory_order_relaxed));
  // Q2: a parked popper means an empty ring; hand the item over directly.
  if (!poppers_.empty()) {
    if (detail::Waiter* w = poppers_.claim_first()) {
      static_cast<std::optional<T>*>(static_cast<PopWaiter*>(w)->out)->emplace(std::move(value));
      assert(invariants_hold_locked());
      return w;
    }
  }
  const std::size_t n = size_.load(std::memory_order_relaxed);
  std::size_t tail = head_ + n;
  if (tail >= capacity_) tail -= capacity_;
  ::new (static_cast<void*>(ring_[tail].bytes)) T(std::move(value));
  size_.store(n + 1, std::memory_order_relaxed);
  assert(invariants_hold_locked());
  return nullptr;
}

template <class T>
detail::Waiter* Queue<T>::pop_locked(std::optional<T>& out) noexcept {
  std::size_t n = size_.load(std::memory_order_relaxed);
  assert(n != 0);
  T* oldest = item(head_);
  out.emplace(std::move(*oldest));
  oldest->~T();
  if (++head_ == capacity_) head_ = 0;
  --n;
  detail::Waiter* w = pushers_.empty() ? nullptr : pushers_.claim_first();
  if (w != nullptr) {
    // Q3: the first parked pusher takes the freed slot.
    std::size_t tail = head_ + n;
    if (tail >= capacity_) tail -= capacity_;
    ::new (static_cast<void*>(ring_[tail].bytes))
        T(std::move(*static_cast<T*>(static_cast<PushWaiter*>(w)->value)));
    ++n;
  }
  size_.store(n, std::memory_order_relaxed);
  assert(invariants_hold_locked());
  return w;
}

}  // namespace weft

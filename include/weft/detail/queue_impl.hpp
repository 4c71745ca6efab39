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

// PushAwaiter and PopAwaiter (CRTP): Derived says what a push or pop can do now
// (ready_locked(): kDone, kClosed, or kWaited when it must park), does it
// (complete_locked(), which returns a claimed waiter to resume), where it parks (parked())
// and what its waiter carries (prepare()).
template <class T>
template <class Derived, class W>
class Queue<T>::WaitOp {
 public:
  WaitOp(const WaitOp&) = delete;
  WaitOp& operator=(const WaitOp&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    promise_ = detail::weft_promise_of(h);
    // The level-triggered pull check first: Cancelled wins over everything.
    if (detail::pull_cancelled(promise_)) [[unlikely]] {
      how_ = How::kCancelledEarly;
      return false;
    }
    detail::Waiter* woken = nullptr;
    {
      std::lock_guard<detail::SpinLock> lock(queue_.lock_);
      how_ = self().ready_locked();
      if (how_ != How::kWaited) [[likely]]
        woken = self().complete_locked(how_);
    }
    if (how_ == How::kWaited) [[unlikely]]
      return wait_slow(h);
    detail::resume_claimed(woken);
    return false;
  }

 protected:
  enum class How : std::uint8_t { kWaited, kDone, kClosed, kCancelledEarly };

  explicit WaitOp(Queue& q) noexcept : queue_(q) {}
  ~WaitOp() {}  // the Waiter (slow path only) is trivially destructible

  // await_resume()'s common part: throws Cancelled if the wait ended by cancellation; then
  // the operation completed (kDone), or found the queue closed (closed()).
  void resume_or_throw_cancelled() {
    if (how_ == How::kCancelledEarly) [[unlikely]]
      detail::throw_cancelled_into(promise_);
    // Claimed (an item moved, or closed) wins over a cancellation that came later.
    if (how_ == How::kWaited && waiter_.end()) waiter_.throw_cancelled_here();
  }
  bool closed() const noexcept {
    return how_ == How::kClosed || (how_ == How::kWaited && waiter_.closed);
  }

  Queue& queue_;
  detail::PromiseBase* promise_ = nullptr;
  How how_ = How::kWaited;
  union {
    W waiter_;  // constructed by wait_slow() only: the fast path does not initialise it
  };

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }

  template <class P>
  bool wait_slow(std::coroutine_handle<P> h) {
    ::new (static_cast<void*>(&waiter_)) W();
    self().prepare(waiter_);
    // false: already cancelled; the waiter is Cancelled and end() says so.
    if (!waiter_.begin(h, Derived::kLeave, &queue_)) return false;
    detail::Waiter* woken = nullptr;
    bool park = false;
    {
      std::lock_guard<detail::SpinLock> lock(queue_.lock_);
      const How now = self().ready_locked();
      if (now == How::kWaited) {
        if (waiter_.start_waiting()) {  // else cancelled during begin(): never linked
          self().parked().push_back(waiter_);
          park = true;
        }
      } else if (waiter_.satisfy_now()) {
        // Claimed ourselves before moving anything: a cancellation that won moves nothing.
        waiter_.closed = now == How::kClosed;
        woken = self().complete_locked(now);
      }
      assert(queue_.invariants_hold_locked());
    }
    // If parked, the task may already run elsewhere: only locals from here on.
    detail::resume_claimed(woken);
    return park;
  }
};

// The awaitable of Queue::push(). Not movable: co_await it where push() returns it.
template <class T>
class Queue<T>::PushAwaiter : public WaitOp<PushAwaiter, PushWaiter> {
  using Base = WaitOp<PushAwaiter, PushWaiter>;
  using How = typename Base::How;
  friend Base;

 public:
  PushAwaiter(Queue& q, T& value) noexcept : Base(q), value_(value) {}

  void await_resume() {
    this->resume_or_throw_cancelled();
    if (this->closed()) throw QueueClosed();
  }

 private:
  static constexpr auto kLeave = &Queue::leave_push;
  How ready_locked() const noexcept {
    if (this->queue_.closed_.load(std::memory_order_relaxed)) [[unlikely]]
      return How::kClosed;
    return this->queue_.can_push_locked() ? How::kDone : How::kWaited;
  }
  detail::Waiter* complete_locked(How how) noexcept {
    return how == How::kDone ? this->queue_.push_locked(value_) : nullptr;
  }
  detail::WaiterList& parked() noexcept { return this->queue_.pushers_; }
  void prepare(PushWaiter& w) noexcept { w.value = &value_; }

  T& value_;  // moved from only when the item enters
};

// The awaitable of Queue::pop(). Not movable: co_await it where pop() returns it.
template <class T>
class Queue<T>::PopAwaiter : public WaitOp<PopAwaiter, PopWaiter> {
  using Base = WaitOp<PopAwaiter, PopWaiter>;
  using How = typename Base::How;
  friend Base;

 public:
  explicit PopAwaiter(Queue& q) noexcept : Base(q) {}

  std::optional<T> await_resume() {
    this->resume_or_throw_cancelled();
    return std::move(result_);
  }

 private:
  static constexpr auto kLeave = &Queue::leave_pop;
  // An item queued: take it; none and closed: done with nullopt; else park.
  How ready_locked() const noexcept {
    if (this->queue_.size_.load(std::memory_order_relaxed) != 0) [[likely]]
      return How::kDone;
    return this->queue_.closed_.load(std::memory_order_relaxed) ? How::kClosed : How::kWaited;
  }
  detail::Waiter* complete_locked(How how) noexcept {
    return how == How::kDone ? this->queue_.pop_locked(result_) : nullptr;
  }
  detail::WaiterList& parked() noexcept { return this->queue_.poppers_; }
  void prepare(PopWaiter& w) noexcept { w.out = &result_; }

  std::optional<T> result_;  // written by a pusher that claimed the waiter, under lock_
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

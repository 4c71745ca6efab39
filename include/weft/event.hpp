// Event: a flag that tasks can wait for (asyncio.Event).
//
//   Event ready;
//   ... co_await ready.wait();   // parks without holding a worker until set() or cancellation
//   ready.set();                 // from any thread: wakes every waiter
//
// wait() returns at once when the event is set (Cancelled if the task is cancelled). A waiting task whose scope is cancelled is
// woken by the cancellation itself and the wait throws Cancelled; it leaves the queue, so a
// later set() does not touch it.
#pragma once

#include <coroutine>
#include <mutex>

#include "weft/detail/waiter.hpp"

namespace weft {

class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  // Destroying an Event that tasks still wait on is a UsageError reported by terminate:
  // those tasks could never be woken.
  ~Event();

  // Sets the event and wakes every waiter. From any thread.
  void set();
  // Resets the event; later waits park again.
  void clear();
  bool is_set() const;

  class Awaiter {
   public:
    explicit Awaiter(Event& e) : event_(e) {}
    // Always goes through await_suspend, which learns the task's scope: a cancelled task
    // gets Cancelled even from a set event (every suspension point checks).
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
      if (!waiter_.begin(h, &Event::leave, &event_)) return false;
      return event_.enqueue(waiter_);
    }
    void await_resume() {
      if (waiter_.end()) waiter_.throw_cancelled_here();
    }

   private:
    Event& event_;
    detail::Waiter waiter_;
  };

  // co_await event.wait(): see above.
  Awaiter wait() { return Awaiter(*this); }

 private:
  // True (queued, Waiting) when the task must stay suspended.
  bool enqueue(detail::Waiter& w);
  static void leave(detail::Waiter* w) noexcept;

  mutable std::mutex mutex_;
  bool set_ = false;                   // guarded by mutex_
  detail::WaiterList waiters_;         // guarded by mutex_
};

}  // namespace weft

// Queue<T>: a bounded multi-producer multi-consumer FIFO channel for tasks (asyncio.Queue with
// a maxsize, tokio's mpsc/async-channel bounded channels; SPEC §11), and QueueClosed.
//
//   weft::Queue<Job> jobs(64);
//   Task<void> producer() {
//     for (Job j : read_jobs()) co_await jobs.push(std::move(j));  // parks while 64 are queued
//     jobs.close();                                                  // consumers drain, then end
//   }
//   Task<void> consumer() {
//     while (std::optional<Job> j = co_await jobs.pop()) run(*j);    // nullopt: closed and drained
//   }
//
// Rules:
// - FIFO: items come out in the order they went in; parked pushers enter, and parked poppers
//   are served, strictly in arrival order. A push that finds a popper parked hands the item to
//   it directly; a pop that frees a slot moves the first parked pusher's item in. try_push()
//   fails while pushers are parked (it does not overtake them); try_pop() succeeds whenever an
//   item is queued (poppers park only on an empty queue).
// - push(v) moves from v only when the item enters (the queue or a parked popper's hands): a
//   push that throws (Cancelled, TimeoutError from a timeout around it, QueueClosed) leaves v
//   with the caller, intact. A pop that throws has taken nothing: nothing is lost or
//   duplicated. A wait that completed at the very instant its task was cancelled (the item
//   went in, or came out) returns normally; the task's next suspension point throws Cancelled.
// - push() and pop() are cancellation points: in a task that is already cancelled they throw
//   Cancelled even when they could complete (Cancelled wins over QueueClosed and over a free
//   slot or a queued item). A parked push or pop is woken by its cancellation and leaves the
//   queue.
// - close() (idempotent, from any thread): later pushes and try_pushes throw QueueClosed; parked
//   pushers are woken with QueueClosed (their items stay with them); items already queued stay
//   to be popped; once the queue is closed and empty, pop() returns std::nullopt at once, and
//   parked poppers are woken with std::nullopt. A parked push that was both closed out and
//   cancelled sees whichever came first.
// - T must be nothrow move-constructible (items move under the queue's spinlock, where a throw
//   could lose one). A Queue must not be destroyed while tasks wait on it (the process
//   terminates with a message); items still queued are destroyed with it.
// - Misuse: Queue(0) throws UsageError (asyncio's maxsize=0 means unbounded; weft's queues
//   are bounded: pass the bound you want).
//
// Cost: try_push and try_pop take a spinlock (one atomic exchange, and a plain store to
// release it) and move the item; no allocation. push()/pop() add the scope's pull check;
// they register a cancellation callback only when they park. The protocol is at the top of
// include/weft/detail/queue_core.hpp (the typed half) and primitives/queue.cpp.
#pragma once

#include <coroutine>
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "weft/detail/waiter.hpp"
#include "weft/errors.hpp"

namespace weft {

// Thrown by push()/try_push() on a closed Queue (and into pushers parked when it closed).
class QueueClosed : public std::runtime_error {
 public:
  QueueClosed() : std::runtime_error("weft: push to a closed Queue") {}
};

}  // namespace weft

#include "weft/detail/queue_core.hpp"

namespace weft {

template <class T>
class Queue : private detail::QueueCore {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "weft::Queue<T>: T must be nothrow move-constructible and destructible "
                "(items move under the queue's spinlock)");

 public:
  class PushAwaiter;
  class PopAwaiter;

  // An empty queue that holds at most `capacity` items. Throws UsageError when capacity is 0.
  //
  //   weft::Queue<std::string> lines(1024);
  explicit Queue(std::size_t capacity);
  // Destroys the items still queued. Terminates the process if tasks still wait on it.
  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // co_await q.push(std::move(v)): waits (FIFO) while the queue is full, then moves v in.
  // Throws Cancelled (first), then QueueClosed if the queue is closed or closes while it
  // waits; v is then left with the caller. Deadlocks if no task ever pops or closes.
  //
  //   co_await q.push(std::move(item));
  [[nodiscard]] PushAwaiter push(T&& value) noexcept;

  // co_await q.pop() -> std::optional<T>: the oldest item, waiting (FIFO) while the queue is
  // empty; std::nullopt once the queue is closed and empty. Throws Cancelled (a task already
  // cancelled, even with items queued; or cancelled while it waits): no item is taken.
  //
  //   while (auto item = co_await q.pop()) use(*item);
  [[nodiscard]] PopAwaiter pop() noexcept;

  // Moves `value` in if there is room and no pusher waits; false (value untouched) otherwise.
  // Never waits. Throws QueueClosed (value untouched) once the queue is closed.
  //
  //   if (!q.try_push(item)) drop_or_retry(item);
  bool try_push(T& value);

  // The oldest item if one is queued, else std::nullopt (closed or not). Never waits, never
  // throws.
  //
  //   while (auto item = q.try_pop()) use(*item);
  std::optional<T> try_pop() noexcept;

  // Closes the queue (see the top of this file). Idempotent, from any thread, never throws.
  //
  //   q.close();   // producers are done
  void close() noexcept { close_and_wake(); }

  // Whether close() was called.
  bool closed() const noexcept { return is_closed(); }
  // Items queued right now (a snapshot).
  std::size_t size() const noexcept { return snapshot_size(); }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  // What PushAwaiter and PopAwaiter share: the pull check, the fast path under lock_, and
  // parking on the slow path (queue_impl.hpp).
  template <class Derived, class W>
  class WaitOp;

  struct alignas(T) Slot {
    unsigned char bytes[sizeof(T)];
  };
  T* item(std::size_t i) noexcept { return std::launder(reinterpret_cast<T*>(ring_[i].bytes)); }
  // Under lock_, when can_push_locked(): moves `value` to the first parked popper, or else
  // into the ring. Returns the claimed popper (to resume after unlocking), or nullptr.
  detail::Waiter* push_locked(T& value) noexcept;
  // Under lock_, when size_ > 0: moves the oldest item into `out`, then moves the first parked
  // pusher's item into the freed slot. Returns the claimed pusher, or nullptr.
  detail::Waiter* pop_locked(std::optional<T>& out) noexcept;

  std::unique_ptr<Slot[]> ring_;  // capacity_ slots; items at head_ .. head_ + size_ (mod)
};

}  // namespace weft

#include "weft/detail/queue_impl.hpp"

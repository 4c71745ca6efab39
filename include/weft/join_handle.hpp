// JoinHandle<T>: the handle of a task spawned into a TaskGroup (task_group.hpp).
//
//   JoinHandle<Page> h = tg.spawn(fetch(url));
//   Page p = co_await h.join();                    // wait for this child alone
//   co_await weft::timeout(1s, h.join());         // ... or for at most a second: cancels nothing
//   h.cancel();                                    // cancel this child alone
//
// - done(): true once the task has finished (with a value or an exception); always true
//   after the group ended.
// - result() / outcome(): the value (or rethrows) / the Outcome, once done(); UsageError
//   before. outcome()'s first call moves the result out of the task (a reference result()
//   returned before then refers to the moved-from value). Readable after the group ended.
// - co_await join(): waits for this task alone and returns its value (copied when the type
//   can be copied, else moved out) or rethrows its exception: Cancelled if it was cancelled.
//   A cancellation of the joining task (or a timeout() around the join) stops the wait and
//   nothing else. One join() at a time per handle (UsageError for a second one).
// - cancel(): cancels this task alone, on every thread; a no-op once it finished. Its
//   Cancelled is not a failure of the group.
// - Dropping a handle is normal and never blocks: the task goes on and its group still
//   awaits it. A supervised child's failure that nothing read (join, result, outcome) when
//   its handle is dropped fails the group if the group still runs, else goes to the
//   unobserved-error handler (task_group.hpp).
// A handle is a move-only value: use it from one task at a time.
#pragma once

#include <coroutine>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "weft/detail/group_state.hpp"
#include "weft/detail/waiter.hpp"
#include "weft/errors.hpp"
#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft {

class TaskGroup;

template <class T>
class JoinHandle {
 public:
  using value_type = detail::stored_t<T>;

  JoinHandle(JoinHandle&& o) noexcept
      : handle_(std::exchange(o.handle_, nullptr)),
        outcome_(std::move(o.outcome_)),
        observed_(o.observed_) {}
  JoinHandle& operator=(JoinHandle&& o) noexcept {
    if (this != &o) {
      drop();
      handle_ = std::exchange(o.handle_, nullptr);
      outcome_ = std::move(o.outcome_);
      observed_ = o.observed_;
    }
    return *this;
  }
  JoinHandle(const JoinHandle&) = delete;
  JoinHandle& operator=(const JoinHandle&) = delete;
  ~JoinHandle() { drop(); }

  bool done() const noexcept {
    // Acquire pairs with the child's fetch_or in GroupState::child_finished(): the result is
    // visible.
    return handle_ && (handle_.promise().handoff.load(std::memory_order_acquire) &
                       detail::PromiseBase::kChildFinished) != 0;
  }

  value_type& result() {
    if (outcome_) return outcome_->value();
    // Read in place: the frame holds the result for as long as this handle lives.
    require_done();
    observed_ = true;
    auto& p = handle_.promise();
    if (p.exception) [[unlikely]]
      std::rethrow_exception(p.exception);
    if constexpr (std::is_void_v<T>) return unit_;
    else return p.value;
  }

  Outcome<T>& outcome() {
    if (!outcome_) {
      require_done();
      observed_ = true;
      auto& p = handle_.promise();
      if (p.exception) outcome_.emplace(Outcome<T>::from_exception(p.exception));
      else outcome_.emplace(Outcome<T>::from_value(p.take_stored()));
    }
    return *outcome_;
  }

  class JoinAwaiter;
  // co_await h.join() -> the task's value; see the top of this file.
  JoinAwaiter join() {
    if (!handle_) throw UsageError("JoinHandle::join on an empty (moved-from) handle");
    return JoinAwaiter(*this);
  }
  JoinAwaiter operator co_await() { return join(); }

  void cancel() noexcept {
    // The frame, and the child's scope in it, live as long as this handle.
    if (handle_ && !done()) handle_.promise().group_child.scope.cancel();
  }

  // For weft's own primitives (wait()): the task's promise and frame.
  detail::PromiseBase* promise_base() const noexcept {
    return handle_ ? &handle_.promise() : nullptr;
  }
  void* frame_address() const noexcept { return handle_.address(); }

 private:
  friend class TaskGroup;
  explicit JoinHandle(typename Task<T>::handle_type h) noexcept : handle_(h) {}
  void require_done() const {
    if (!handle_) throw UsageError("JoinHandle: empty (moved-from) handle");
    if (!done()) throw UsageError("JoinHandle: the task has not finished; wait for its group");
  }
  void drop() noexcept {
    if (!handle_) return;
    // Two statements: argument order is unspecified (g++ evaluates the exchange first).
    auto h = std::exchange(handle_, nullptr);
    detail::drop_child_frame(h.promise(), h.address(), observed_);
  }

  typename Task<T>::handle_type handle_;
  // Made by the first outcome() call, which moves the value out of the frame.
  std::optional<Outcome<T>> outcome_;
  bool observed_ = false;  // something read the outcome through this handle
  [[no_unique_address]] std::monostate unit_;  // result() of a void task
};

// The awaiter of join(): parks a Waiter (waiter.hpp) in the child (group_state.hpp has the
// hand-off).
template <class T>
class JoinHandle<T>::JoinAwaiter {
 public:
  explicit JoinAwaiter(JoinHandle& h) noexcept : handle_(&h) {}
  // Movable until awaited (so that join() composes: timeout(d, h.join())).
  JoinAwaiter(JoinAwaiter&& o) noexcept : handle_(o.handle_) {}

  bool await_ready() const noexcept { return false; }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> awaiting) {
    detail::perturb::at_suspend();  // test builds only (perturb.hpp)
    detail::PromiseBase* self = detail::weft_promise_of(awaiting);
    detail::check_cancelled(self);
    if (handle_->done()) return false;
    detail::PromiseBase& child = handle_->handle_.promise();
    // Relaxed: a misuse check; only this handle's owner sets the bit, so it sees its own.
    if ((child.handoff.load(std::memory_order_relaxed) & detail::PromiseBase::kJoinWaiting) != 0)
      throw UsageError("JoinHandle::join: another join() is already waiting on this task");
    if (!waiter_.begin(awaiting, &detail::join_leave, &child)) return false;  // cancelled
    // Registers with the child while the waiter is still in Setup, and makes it Waiting last:
    // a Waiting waiter may be resumed (woken or cancelled) and freed at once, so nothing here
    // touches it after start_waiting() (waiter.hpp). (Issue 10: registering after it caused
    // a use-after-free when a cancellation resumed the joiner in between.)
    child.group_child.join_waiter = &waiter_;
    // acq_rel: publishes join_waiter to the child that sees the bit; acquires its result
    // when it finished first.
    const std::uint8_t before =
        child.handoff.fetch_or(detail::PromiseBase::kJoinWaiting, std::memory_order_acq_rel);
    if ((before & detail::PromiseBase::kChildFinished) != 0) {
      // It finished before it could see us: take the registration back ourselves. The result
      // is ready, unless a cancellation claimed the waiter first (await_resume sees which).
      child.handoff.fetch_and(static_cast<std::uint8_t>(~detail::PromiseBase::kJoinWaiting),
                              std::memory_order_release);
      (void)waiter_.satisfy_now();
      return false;
    }
    if (waiter_.start_waiting()) return true;  // the child or a cancellation resumes us
    // Claimed in Setup, by the finishing child (Notified) or by a cancellation (Cancelled;
    // its leave() may have run before the bit was set): neither resumes us. Wait until the
    // bit is clear, so that the child is done with the waiter, and go on.
    detail::join_leave(&waiter_);
    return false;
  }

  value_type await_resume() {
    if (waiter_.end()) waiter_.throw_cancelled_here();
    value_type& v = handle_->result();
    if constexpr (std::is_copy_constructible_v<value_type>) return v;
    else return std::move(v);
  }

 private:
  JoinHandle* handle_;
  detail::Waiter waiter_;
};

}  // namespace weft

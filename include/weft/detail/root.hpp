// Root tasks: how a Task submitted to a Runtime is owned, run and reported to its Future.
//
// A submitted Task is wrapped in a root coroutine whose promise carries the root's
// cancellation scope; the root and its Future share a RootState (two references). The runtime
// keeps every live RootState in a list so that ~Runtime can cancel them and wait for them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <exception>
#include <mutex>
#include <optional>

#include "weft/deadline.hpp"
#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/task.hpp"

namespace weft::detail {

class Scheduler;

struct RootStateBase {
  explicit RootStateBase(Scheduler& s) : scheduler(&s) {}
  virtual ~RootStateBase() = default;

  void release() noexcept {
    // acq_rel: the last owner sees the other's writes before deleting.
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Called by the root coroutine when the task has finished (value or exception stored).
  void complete() {
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
    ready.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mutex);
    ready.wait(lock, [&] { return done; });
  }
  // Saturating: condition_variable::wait_for(d) computes now() + d, which overflows for
  // Duration::max() and returns at once; a wait past the clock's range waits without limit.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    const Deadline until = Deadline::after(d);
    std::unique_lock<std::mutex> lock(mutex);
    if (until.is_never()) {
      ready.wait(lock, [&] { return done; });
      return true;
    }
    return ready.wait_until(lock, until.time(), [&] { return done; });
  }
  bool is_done() {
    std::lock_guard<std::mutex> lock(mutex);
    return done;
  }

  Scheduler* scheduler;
  CancelState cancel;
  std::exception_ptr exception;
  detail::atomic<int> refs{2};  // the root coroutine and the Future
  std::mutex mutex;
  std::condition_variable ready;
  bool done = false;     // guarded by mutex
  bool consumed = false;  // Future::get() was called; only the Future's owner touches it
  // The scheduler's list of live roots, guarded by its roots mutex.
  RootStateBase* prev = nullptr;
  RootStateBase* next = nullptr;
};

template <class T>
struct RootState final : RootStateBase {
  using RootStateBase::RootStateBase;
  std::optional<stored_t<T>> value;
};

// Runtime bookkeeping the root needs from the (private) scheduler.
void root_finished(Scheduler& s, RootStateBase& root) noexcept;

struct RootCoroutine {
  struct promise_type : PromiseBase {
    template <class SubmittedTask>
    promise_type(SubmittedTask&, RootStateBase* s) noexcept : state(s) {
      cancel = &s->cancel;
    }
    RootCoroutine get_return_object() noexcept {
      return RootCoroutine{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    void return_void() const noexcept {}

    struct Finish {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> self) const noexcept {
        RootStateBase* s = self.promise().state;
        Scheduler& scheduler = *s->scheduler;
        s->complete();
        self.destroy();
        // Last: once the scheduler counts this root as finished, ~Runtime may proceed.
        root_finished(scheduler, *s);
      }
      void await_resume() const noexcept {}
    };
    Finish final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { state->exception = std::current_exception(); }

    RootStateBase* state;
  };
  std::coroutine_handle<promise_type> handle;
};

template <class T>
RootCoroutine run_root(Task<T> submitted, RootStateBase* state) {
  auto* typed = static_cast<RootState<T>*>(state);
  {
    // The task's frame (its parameters included) is destroyed at the end of this block, also
    // when it throws: before the Future is told, so that nothing of the task outlives get().
    Task<T> task = std::move(submitted);
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      typed->value.emplace();
    } else {
      typed->value.emplace(co_await std::move(task));
    }
  }
}

}  // namespace weft::detail

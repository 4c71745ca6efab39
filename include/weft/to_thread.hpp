// to_thread: run blocking code on the runtime's blocking pool (asyncio.to_thread).
//
//   std::string text = co_await weft::to_thread([&] { return read_whole_file(path); });
//   std::string page = co_await weft::to_thread(fetch_blocking, url, 3 /* retries */);
//   co_await weft::to_thread([](weft::CancellationToken t, Path p) {   // may stop early
//     for (Chunk c : chunks(p)) { if (t.is_cancelled()) return; write(c); }
//   }, path);
//
// `co_await to_thread(f)` runs `f()` on a thread of the runtime's blocking pool (threads apart
// from the workers; see RuntimeOptions::max_blocking_threads and blocking_keep_alive), so a
// blocking call never stalls a worker: the worker runs other tasks meanwhile. The task resumes
// on a worker with f's result, or f's exception rethrown.
//
// Arguments (SPEC r2): `to_thread(f, args...)` calls f(args...) on the pool thread. The
// arguments are copied or moved into the call when to_thread() is called (like std::thread:
// pass std::ref(x) to share x, which must then outlive the call); f receives them as rvalues.
// If f can be called with a weft::CancellationToken followed by the arguments, it is: the
// token is the awaiting task's, so it reads cancelled once the awaiter is cancelled (or its
// deadline passes), and blocking code that polls it can stop early.
//
// Cancellation (level-triggered, like every weft suspension point):
// - A task that is already cancelled does not submit f at all: it throws Cancelled.
// - Cancelling the awaiting task resumes it at once with Cancelled. f is not interrupted: if it
//   started, it runs to its end on its pool thread and its result (or exception) is dropped
//   there; if it was still queued, it never runs.
// - A call still queued when its awaiter's deadline (this_task::deadline(), from the timeouts
//   around it) has passed never starts, even if the deadline's timer has not fired yet: the
//   pool skips it, and the awaiter ends when that timer cancels it (TimeoutError from the
//   timeout).
// - A task cancelled after f returned but before it resumed also throws Cancelled (the result
//   is dropped): to_thread never returns into a cancelled task.
//
// When the pool is at its bound and every thread is busy, calls queue and start in FIFO order.
// ~Runtime waits for every call that is running to return (see ~Runtime): a call that never
// returns keeps it waiting. Must be awaited from a task running on a weft Runtime (UsageError
// otherwise). f must return a value or void, not a reference (the caller would read it on
// another thread after the call ended).
//
// Where it lives: a runtime service (the pool is part of the executor, in runtime/), not a
// synchronisation primitive: it needs only the Waiter protocol and the scheduler, so its code
// is this header plus runtime/blocking_pool.cpp, and nothing in primitives/.
#pragma once

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include "weft/cancellation.hpp"
#include "weft/detail/blocking_job.hpp"
#include "weft/detail/worker.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"
#include "weft/this_task.hpp"

namespace weft {
namespace detail {

// A BlockingJob that owns f and the slot for its result.
template <class F>
struct BlockingCall final : BlockingJob {
  using Result = std::invoke_result_t<F>;

  explicit BlockingCall(F&& f) : fn(std::move(f)) {
    invoke = [](BlockingJob& self) noexcept {
      auto& call = static_cast<BlockingCall&>(self);
      try {
        if constexpr (std::is_void_v<Result>) {
          std::invoke(std::move(call.fn));
          call.result.emplace();
        } else {
          call.result.emplace(std::invoke(std::move(call.fn)));
        }
      } catch (...) {
        call.error = std::current_exception();
      }
    };
    destroy = [](BlockingJob& self) noexcept { delete static_cast<BlockingCall*>(&self); };
  }

  F fn;
  std::optional<stored_t<Result>> result;
  std::exception_ptr error;
};

inline void blocking_job_has_no_queue(Waiter*) noexcept {}

// The awaitable inside to_thread(): the protocol is at the top of detail/blocking_job.hpp.
template <class F>
class ToThreadAwaiter {
 public:
  using Result = std::invoke_result_t<F>;

  explicit ToThreadAwaiter(F& f) noexcept : fn_(f) {}
  ToThreadAwaiter(const ToThreadAwaiter&) = delete;
  ToThreadAwaiter& operator=(const ToThreadAwaiter&) = delete;
  ~ToThreadAwaiter() {
    if (job_ != nullptr) job_->release();
  }

  bool await_ready() const {
    if (tl_worker == nullptr) [[unlikely]]
      throw UsageError("to_thread must be awaited from a task running on a weft Runtime");
    return false;
  }

  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) {
    promise_ = weft_promise_of(h);
    // Step 1: a cancelled task submits nothing (await_resume throws).
    if (pull_cancelled(promise_)) return false;
    job_ = new BlockingCall<F>(std::move(fn_));
    if (promise_ != nullptr && promise_->context != nullptr)
      job_->context = clone_visible_context(promise_->context);
    // The pool skips the call if this passes before it starts.
    if (promise_ != nullptr && promise_->cancel != nullptr)
      job_->deadline = promise_->cancel->deadline();
    // Step 2; false: cancelled meanwhile (the Waiter is Cancelled), nothing submitted.
    if (!job_->waiter.begin(h, &blocking_job_has_no_queue, job_)) return false;
    // Step 3.
    try {
      submit_blocking(*job_->waiter.scheduler, *job_);
    } catch (...) {
      job_->waiter.end();  // unregisters the cancellation callback
      throw;
    }
    // Step 4: the last touch. False: f already returned, or a cancellation came first.
    return job_->waiter.start_waiting();
  }

  Result await_resume() {
    const bool cancelled = job_ == nullptr || job_->waiter.end();
    // Level-triggered: a result that arrived together with a cancellation is dropped.
    if (cancelled || pull_cancelled(promise_)) throw_cancelled_into(promise_);
    auto& call = *static_cast<BlockingCall<F>*>(job_);
    if (call.error) [[unlikely]] {
      const std::exception_ptr error = std::exchange(call.error, nullptr);
      rethrow_into(promise_, error);
    }
    if constexpr (!std::is_void_v<Result>) return std::move(*call.result);
  }

 private:
  F& fn_;  // the parameter of to_thread(), in its frame
  BlockingJob* job_ = nullptr;
  PromiseBase* promise_ = nullptr;
};

// What to_thread(f, args...) calls: f(token, args...) when f takes the token first, else
// f(args...).
template <class F, class... A>
inline constexpr bool takes_token_v = std::is_invocable_v<F, CancellationToken, A...>;

template <class F, class... A>
struct ToThreadResult {
  using type = void;  // not callable: to_thread()'s static_assert says so
};
template <class F, class... A>
  requires(!takes_token_v<F, A...> && std::is_invocable_v<F, A...>)
struct ToThreadResult<F, A...> {
  using type = std::invoke_result_t<F, A...>;
};
template <class F, class... A>
  requires takes_token_v<F, A...>
struct ToThreadResult<F, A...> {
  using type = std::invoke_result_t<F, CancellationToken, A...>;
};
template <class F, class... A>
using to_thread_result_t = typename ToThreadResult<F, A...>::type;

}  // namespace detail

// co_await to_thread(f, args...) -> f's result: see the top of this file.
//
//   auto rows = co_await weft::to_thread([&] { return db.query(sql); });   // blocking client
//   co_await weft::to_thread([] { std::this_thread::sleep_for(1s); });     // void
//   auto n = co_await weft::to_thread(&count_lines, path);                 // with arguments
//   co_await weft::to_thread([](weft::CancellationToken t) {               // stops early
//     while (!t.is_cancelled() && step()) {}
//   });
template <class F, class... A>
Task<detail::to_thread_result_t<F, A...>> to_thread(F f, A... args) {
  using R = detail::to_thread_result_t<F, A...>;
  static_assert(detail::takes_token_v<F, A...> || std::is_invocable_v<F, A...>,
                "to_thread(f, args...): f must be callable with args... (or with a "
                "weft::CancellationToken first)");
  static_assert(!std::is_reference_v<R>,
                "to_thread(f): f must return a value or void, not a reference");
  static_assert(std::is_move_constructible_v<F>, "to_thread(f): f must be movable");
  // `co_return` of a void co_await calls return_void().
  if constexpr (detail::takes_token_v<F, A...>) {
    // The awaiting task's token (this coroutine runs in its scope), then the arguments.
    CancellationToken token = co_await this_task::token();
    auto call = [f = std::move(f), token = std::move(token),
                 ... args = std::move(args)]() mutable -> R {
      return std::invoke(std::move(f), std::move(token), std::move(args)...);
    };
    co_return co_await detail::ToThreadAwaiter<decltype(call)>(call);
  } else if constexpr (sizeof...(A) != 0) {
    auto call = [f = std::move(f), ... args = std::move(args)]() mutable -> R {
      return std::invoke(std::move(f), std::move(args)...);
    };
    co_return co_await detail::ToThreadAwaiter<decltype(call)>(call);
  } else {
    co_return co_await detail::ToThreadAwaiter<F>(f);  // moves f into the job
  }
}

}  // namespace weft

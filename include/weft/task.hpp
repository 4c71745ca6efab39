// Task<T>: weft's lazy, move-only coroutine type.
//
//   Task<int> answer() { co_return 42; }
//   Task<int> twice() { int a = co_await answer(); co_return a + co_await answer(); }
//
// A Task starts only when it is awaited, gathered, spawned or submitted; destroying one that
// never started runs nothing. `co_await task` transfers control into the task and back with
// symmetric transfer, so a loop of synchronously completing awaits runs in constant stack.
// An exception that escapes the task is rethrown by the co_await, on whatever thread resumes
// the awaiting coroutine. Awaiting a moved-from or already-awaited Task throws UsageError.
// If the awaiting task's scope is cancelled, the await throws Cancelled without starting the
// task.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

#include "weft/detail/cancel_state.hpp"
#include "weft/detail/frame_allocator.hpp"
#include "weft/detail/join_state.hpp"
#include "weft/errors.hpp"

namespace weft {

template <class T = void>
class Task;

namespace detail {

// What every weft coroutine's promise holds, whatever it returns.
struct PromiseBase {
  // Frames come from the per-thread recycling allocator (frame_allocator.hpp).
  static void* operator new(std::size_t bytes) { return allocate_frame(bytes); }
  static void operator delete(void* frame, std::size_t bytes) noexcept {
    release_frame(frame, bytes);
  }

  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) const noexcept {
      PromiseBase& p = self.promise();
      if (p.join == nullptr) return p.continuation;
      // After child_done() the parent may already run on another thread and destroy this
      // frame: touch nothing of it from here on.
      return p.join->child_done();
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept {
    exception = std::current_exception();
    if (join != nullptr) join->record_failure(this);
  }

  std::coroutine_handle<> continuation;  // resumed when this task ends (plain co_await)
  JoinState* join = nullptr;             // set instead when a gather owns this task
  CancelState* cancel = nullptr;         // the scope this task runs in (inherited)
  std::exception_ptr exception;
};

template <class P>
inline constexpr bool is_weft_promise = std::is_base_of_v<PromiseBase, P>;

// Passes the awaiting task's scope to a child, or refuses to start it when that scope is
// already cancelled.
template <class P>
CancelState* inherit_scope(std::coroutine_handle<P> parent) {
  if constexpr (is_weft_promise<P>) {
    CancelState* scope = parent.promise().cancel;
    if (scope != nullptr && scope->is_cancelled()) throw Cancelled{};
    return scope;
  } else {
    return nullptr;
  }
}

// `void` results are held as std::monostate wherever a result is stored (gathers, outcomes).
template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
struct Promise final : PromiseBase {
  static_assert(!std::is_reference_v<T>, "Task<T&> is not supported: return a pointer");

  Promise() noexcept {}
  ~Promise() {
    if (has_value) value.~T();
  }

  Task<T> get_return_object() noexcept;

  template <class U = T>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    ::new (static_cast<void*>(std::addressof(value))) T(std::forward<U>(v));
    has_value = true;
  }

  T take() {
    if (exception) std::rethrow_exception(exception);
    return std::move(value);
  }
  stored_t<T> take_stored() { return take(); }

  union {
    T value;
  };
  bool has_value = false;
};

template <>
struct Promise<void> final : PromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take() {
    if (exception) std::rethrow_exception(exception);
  }
  std::monostate take_stored() {
    take();
    return {};
  }
};

[[noreturn]] void throw_not_fresh(bool empty, const char* what);

// Throws UsageError unless `h` is a task that has not started yet. On every await and spawn:
// the check is inline, the throw is not.
template <class H>
inline void require_fresh(H h, const char* what) {
  if (!h) [[unlikely]]
    throw_not_fresh(true, what);
  // Every start (await, gather, submit) sets one of these before resuming the task.
  if (h.promise().continuation || h.promise().join) [[unlikely]]
    throw_not_fresh(false, what);
}

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using value_type = T;
  using handle_type = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  // True when this Task holds a coroutine (not moved from).
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

  class Awaiter {
   public:
    explicit Awaiter(handle_type h) noexcept : handle_(h) {}
    bool await_ready() const {
      detail::require_fresh(handle_, "co_await");
      return false;
    }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) {
      promise_type& child = handle_.promise();
      child.cancel = detail::inherit_scope(awaiting);
      child.continuation = awaiting;
      return handle_;
    }
    T await_resume() { return handle_.promise().take(); }

   private:
    handle_type handle_;
  };

  // The frame stays owned by this Task (and is destroyed with it); the result is moved out.
  Awaiter operator co_await() & noexcept { return Awaiter{handle_}; }
  Awaiter operator co_await() && noexcept { return Awaiter{handle_}; }

  // For weft's own primitives: the coroutine behind this Task.
  handle_type handle() const noexcept { return handle_; }

 private:
  friend struct detail::Promise<T>;
  explicit Task(handle_type h) noexcept : handle_(h) {}
  void reset() noexcept {
    if (handle_) std::exchange(handle_, nullptr).destroy();
  }
  handle_type handle_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>{std::coroutine_handle<Promise<T>>::from_promise(*this)};
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>{std::coroutine_handle<Promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace weft

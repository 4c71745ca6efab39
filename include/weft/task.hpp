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
//
// Every task runs in the cancellation scope of the task that started it. A task whose scope
// is already cancelled when it starts never runs its body: it ends with Cancelled at once.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/context.hpp"
#include "weft/detail/frame_allocator.hpp"
#include "weft/detail/join_state.hpp"
#include "weft/detail/perturb.hpp"
#include "weft/errors.hpp"

namespace weft {

template <class T = void>
class Task;

// A task that was handed Cancelled at a weft suspension point and then returned normally
// swallowed a cancellation, which leaves its scope believing the task obeyed. weft notices
// it in every build (one byte test per completed task) and calls this handler with a
// description naming the task's coroutine (its symbol when the binary exports it, else its
// address). The default handler prints one line to stderr when weft was built without NDEBUG
// (debug builds) and does nothing otherwise. Passing nullptr restores the default.
// Thread-safe.
//
//   weft::set_swallowed_cancellation_handler(
//       [](std::string_view task) { LOG(ERROR) << "swallowed Cancelled: " << task; });
using SwallowedCancellationHandler = void (*)(std::string_view task_description);
void set_swallowed_cancellation_handler(SwallowedCancellationHandler handler) noexcept;

namespace detail {

// The task running on this thread, for the plain (non-awaiting) queries of this_task (its
// scope) and for ContextVar (its bindings). Set when a task starts and each time a weft
// awaiter resumes a task; null between tasks.
inline thread_local PromiseBase* tl_current_task = nullptr;

// Throws Cancelled. Inlined into every suspension point on purpose: the unwinder pays about
// 200 ns per frame it walks, a fifth of a whole delivery, and a mass cancellation delivers
// one per woken task.
[[noreturn, gnu::always_inline]] inline void throw_cancelled() { throw Cancelled{}; }
// True when `e` holds a Cancelled: a type compare with libstdc++, a rethrow-and-catch for a
// type derived from Cancelled (or with another standard library).
bool is_cancelled_exception(const std::exception_ptr& e) noexcept;

struct PromiseBase;
struct Waiter;

// Something other than a gather that owns a running task and must hear when it ends (a
// TaskGroup): its hook returns the coroutine to transfer to. Keeps the runtime ignorant of
// the primitives built on it.
struct Joiner {
  std::coroutine_handle<> (*child_done)(Joiner* self, PromiseBase& child, void* frame) noexcept;
};
// Reports a task that was handed Cancelled and then returned normally.
void report_swallowed_cancellation(PromiseBase& promise) noexcept;

// What every weft coroutine's promise holds, whatever it returns.
struct PromiseBase {
  // Frames come from the per-thread recycling allocator (frame_allocator.hpp).
  static void* operator new(std::size_t bytes) { return allocate_frame(bytes); }
  static void operator delete(void* frame, std::size_t bytes) noexcept {
    release_frame(frame, bytes);
  }

  // The start of every task: a task whose scope is already cancelled ends with Cancelled
  // without running its body (an exception from here goes to unhandled_exception()).
  struct StartAwaiter {
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const {
      CancelState* scope = self->cancel;
      tl_current_task = self;
      // A shield starts whatever its starter's scope says: it brings a scope of its own.
      if (scope != nullptr && scope->is_cancelled() && !self->shielded) [[unlikely]]
        throw_cancelled();
    }
    PromiseBase* self;
  };
  StartAwaiter initial_suspend() noexcept { return {this}; }

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> self) const noexcept {
      detail::perturb::at_suspend();  // test builds only (perturb.hpp)
      PromiseBase& p = self.promise();
      // After child_done() or group_child_done() the parent may already run on another thread
      // and destroy this frame: touch nothing of it from here on.
      if (p.join != nullptr) return p.join->child_done();
      if (p.joiner != nullptr) [[unlikely]]
        return p.joiner->child_done(p.joiner, p, self.address());
      return p.continuation;
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept {
    exception = std::current_exception();
    if (join != nullptr) join->record_failure(this);
  }

  // Called on normal completion.
  void note_return() noexcept {
    if (saw_cancelled && cancel != nullptr && cancel->is_cancelled()) [[unlikely]]
      report_swallowed_cancellation(*this);
  }

  // Rethrows `e` into this task (the awaiting one), remembering that it was handed Cancelled.
  [[noreturn]] void rethrow_here(const std::exception_ptr& e) {
    if (is_cancelled_exception(e)) saw_cancelled = true;
    std::rethrow_exception(e);
  }

  PromiseBase() noexcept {}
  ~PromiseBase() {
    if (is_group_child) group_child.~GroupChildPart();
    if (owns_context) [[unlikely]]
      release_owned_context(context);
  }
  PromiseBase(const PromiseBase&) = delete;
  PromiseBase& operator=(const PromiseBase&) = delete;

  std::coroutine_handle<> continuation;  // resumed when this task ends (plain co_await)
  JoinState* join = nullptr;             // set instead when a gather owns this task
  CancelState* cancel = nullptr;         // the scope this task runs in
  std::exception_ptr exception;
  Joiner* joiner = nullptr;              // set instead when a TaskGroup owns this task
  bool scope_fixed = false;              // `cancel` was chosen by its creator (shield, ...)
  bool saw_cancelled = false;            // Cancelled was delivered into it
  // Starts even when its starter's scope is already cancelled (shield(), and the wrappers
  // timeout() and with_cancellation() put around a shield).
  bool shielded = false;
  bool is_group_child = false;           // `group_child` is constructed
  bool owns_context = false;             // `context` starts with nodes of this task's own
  // Its ContextVar bindings (detail/context.hpp): its starter's when it started, then its own.
  ContextNode* context = nullptr;
  // TaskGroup children only: the hand-off between the group's run of the task and its
  // JoinHandle (detail/group_state.hpp has the protocol; these are its bits).
  enum : std::uint8_t {
    kChildFinished = 1,   // the task has finished: its result is readable (release)
    kHandleDropped = 2,   // the JoinHandle let go of the frame
    kJoinWaiting = 4,     // group_child.join_waiter is parked on it (join())
    kGroupEnded = 8,      // supervised failures: the group has ended and handed the frame over
    kObserved = 16,       // supervised failures: the handle looked at the outcome
    kPinning = 32,        // a wait() is taking a count of the group through this child
  };
  detail::atomic<std::uint8_t> handoff{0};

  // What a TaskGroup child needs beyond a plain task: its own scope below the group's (so
  // that JoinHandle::cancel() reaches it alone) and the slot of a join() parked on it.
  // Constructed by TaskGroup::spawn only: other tasks pay nothing for it.
  struct GroupChildPart {
    CancelState scope{CancelState::ParentLater{}};
    Waiter* join_waiter = nullptr;  // written before kJoinWaiting is set, read after
    bool supervised = false;
  };
  union {
    GroupChildPart group_child;
  };
};

template <class P>
inline constexpr bool is_weft_promise = std::is_base_of_v<PromiseBase, P>;

// The awaiting coroutine's promise when it is a weft task, else null.
template <class P>
PromiseBase* weft_promise_of(std::coroutine_handle<P> h) noexcept {
  if constexpr (is_weft_promise<P>) return &h.promise();
  else return nullptr;
}

// Rethrows `e` into the awaiting task (null when it is not a weft task).
[[noreturn]] inline void rethrow_into(PromiseBase* awaiting, const std::exception_ptr& e) {
  if (awaiting != nullptr) awaiting->rethrow_here(e);
  std::rethrow_exception(e);
}

// Back in the awaiting task after a weft suspension: it is this thread's running task again.
inline void resume_in(PromiseBase* awaiting) noexcept {
  tl_current_task = awaiting;
}

// Throws Cancelled into the awaiting task when its scope is cancelled: the level-triggered
// check of every weft suspension point.
inline void check_cancelled(PromiseBase* awaiting) {
  if (awaiting != nullptr && awaiting->cancel != nullptr && awaiting->cancel->is_cancelled())
    [[unlikely]] {
    awaiting->saw_cancelled = true;
    throw_cancelled();
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
    note_return();
  }

  // The result, or the exception rethrown into `awaiting`.
  T take(PromiseBase* awaiting = nullptr) {
    if (exception) [[unlikely]]
      rethrow_into(awaiting, exception);
    return std::move(value);
  }
  stored_t<T> take_stored(PromiseBase* awaiting = nullptr) { return take(awaiting); }

  union {
    T value;
  };
  bool has_value = false;
};

template <>
struct Promise<void> final : PromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() noexcept { note_return(); }
  void take(PromiseBase* awaiting = nullptr) {
    if (exception) [[unlikely]]
      rethrow_into(awaiting, exception);
  }
  std::monostate take_stored(PromiseBase* awaiting = nullptr) {
    take(awaiting);
    return {};
  }
};

[[noreturn]] void throw_not_fresh(bool empty, const char* what);

// Throws UsageError unless `h` is a task that has not started yet. On every await and spawn:
// the check is inline, the throw is not.
template <class H>
[[gnu::always_inline]] inline void require_fresh(H h, const char* what) {
  if (!h) [[unlikely]]
    throw_not_fresh(true, what);
  // Every start (await, gather, submit) sets one of these before resuming the task.
  // (A TaskGroup child was released from its Task: it fails the first test.)
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
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) noexcept {
      detail::perturb::at_suspend();  // test builds only (perturb.hpp)
      promise_type& child = handle_.promise();
      awaiting_ = detail::weft_promise_of(awaiting);
      if (awaiting_ != nullptr) {
        if (!child.scope_fixed) child.cancel = awaiting_->cancel;
        child.context = awaiting_->context;
      }
      child.continuation = awaiting;
      return handle_;
    }
    T await_resume() {
      promise_type& child = handle_.promise();
      detail::resume_in(awaiting_);  // this thread ran the child: it is our task again
      return child.take(awaiting_);
    }

   private:
    handle_type handle_;
    detail::PromiseBase* awaiting_ = nullptr;
  };

  // The frame stays owned by this Task (and is destroyed with it); the result is moved out.
  Awaiter operator co_await() & noexcept { return Awaiter{handle_}; }
  Awaiter operator co_await() && noexcept { return Awaiter{handle_}; }

  // For weft's own primitives: the coroutine behind this Task.
  handle_type handle() const noexcept { return handle_; }
  // For weft's own primitives: gives up ownership of the coroutine.
  handle_type release() noexcept { return std::exchange(handle_, nullptr); }

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

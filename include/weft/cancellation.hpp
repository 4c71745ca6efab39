// Cancellation tokens, sources and callbacks; with_cancellation and shield.
//
//   CancellationSource source;
//   Future<void> f = rt.submit(with_cancellation(source.token(), crawl(site)));
//   source.cancel();   // from any thread: crawl() sees Cancelled at its next suspension point
//
// Cancellation is cooperative and level-triggered: once a task's scope is cancelled, every
// weft suspension point it reaches throws Cancelled (not a std::exception, so that
// `catch (const std::exception&)` cannot swallow it). Waits (sleeps, semaphores) are woken by
// the cancellation itself.
#pragma once

#include <coroutine>
#include <memory>
#include <type_traits>
#include <utility>

#include "weft/detail/as_task.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/task.hpp"

namespace weft {

// A read-only view of a cancellation state; copies share it. Default-constructed: never
// cancelled.
class CancellationToken {
 public:
  CancellationToken() noexcept = default;
  CancellationToken(const CancellationToken& o) noexcept : state_(o.state_) {
    if (state_ != nullptr) state_->add_ref();
  }
  CancellationToken(CancellationToken&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  CancellationToken& operator=(CancellationToken o) noexcept {
    std::swap(state_, o.state_);
    return *this;
  }
  ~CancellationToken() {
    if (state_ != nullptr) state_->release();
  }

  // True once the source (or a parent token) was cancelled.
  bool is_cancelled() const noexcept {
    return state_ != nullptr && state_->state().is_cancelled();
  }
  // False for a default-constructed token, which can never be cancelled.
  bool can_be_cancelled() const noexcept { return state_ != nullptr; }

  // For weft's own primitives: adopts one reference.
  static CancellationToken adopt(detail::SharedCancelState* s) noexcept {
    CancellationToken t;
    t.state_ = s;
    return t;
  }
  detail::SharedCancelState* shared_state() const noexcept { return state_; }

 private:
  detail::SharedCancelState* state_ = nullptr;
};

// Owns a cancellation state; copies share it.
//
//   CancellationSource parent;
//   CancellationSource child(parent.token());   // cancelled when parent is
class CancellationSource {
 public:
  CancellationSource() : state_(detail::SharedCancelState::make(nullptr)) {}
  // A source that is also cancelled when `parent` is.
  explicit CancellationSource(CancellationToken parent)
      : state_(detail::SharedCancelState::make(parent.shared_state())) {}
  CancellationSource(const CancellationSource& o) noexcept : state_(o.state_) { state_->add_ref(); }
  CancellationSource& operator=(CancellationSource o) noexcept {
    std::swap(state_, o.state_);
    return *this;
  }
  ~CancellationSource() {
    if (state_ != nullptr) state_->release();
  }

  CancellationToken token() const noexcept {
    state_->add_ref();
    return CancellationToken::adopt(state_);
  }
  // From any thread. Runs the registered callbacks (on this thread) before it returns. True
  // if this call cancelled it; false if it already was.
  bool cancel() noexcept { return state_->state().cancel(); }
  bool is_cancelled() const noexcept { return state_->state().is_cancelled(); }

 private:
  detail::SharedCancelState* state_;
};

// RAII: runs `f` once when the token is cancelled, on the cancelling thread; inline, in the
// constructor, if it already is. The destructor unregisters it; if `f` is running on another
// thread at that moment, the destructor waits for it to return (std::stop_callback's rule),
// so `f` may safely refer to objects that die with the callback.
//
// `f` must not throw: it runs inside cancel(), on whatever thread cancels (a timer thread
// when a deadline fires), where nobody could catch it. This is checked when it happens rather
// than at compile time, so that ordinary lambdas need no `noexcept`: an exception leaving
// `f` stops the process with a `weft:` line on stderr naming the exception (the rule of a
// std::stop_callback, with a message instead of a bare std::terminate).
//
//   CancellationCallback wake(token, [&] { socket.shutdown(); });
class CancellationCallback {
 public:
  template <class F>
  CancellationCallback(CancellationToken token, F f) : token_(std::move(token)) {
    static_assert(std::is_nothrow_invocable_v<F&> || std::is_invocable_v<F&>,
                  "a cancellation callback is called with no arguments");
    auto node = std::make_unique<Node<F>>(std::move(f));
    if (token_.shared_state() == nullptr) return;  // can never be cancelled
    if (token_.shared_state()->state().add_callback(*node)) {
      node_ = std::move(node);
    } else {
      node->run(node.get());  // already cancelled: run inline
    }
  }
  ~CancellationCallback() {
    if (node_ != nullptr) token_.shared_state()->state().remove_callback(*node_);
  }
  CancellationCallback(const CancellationCallback&) = delete;
  CancellationCallback& operator=(const CancellationCallback&) = delete;

 private:
  struct NodeBase : detail::CancelCallbackNode {
    virtual ~NodeBase() = default;
  };
  template <class F>
  struct Node final : NodeBase {
    explicit Node(F f) : fn(std::move(f)) {
      run = [](detail::CancelCallbackNode* self) noexcept {
        try {
          static_cast<Node*>(self)->fn();
        } catch (...) {
          detail::report_throwing_cancellation_callback();
        }
      };
    }
    F fn;
  };
  CancellationToken token_;
  std::unique_ptr<NodeBase> node_;
};

namespace detail {

// co_await current_promise() -> the awaiting task's PromiseBase (null outside weft tasks).
struct CurrentPromise {
  bool await_ready() const noexcept { return false; }
  template <class P>
  bool await_suspend(std::coroutine_handle<P> h) noexcept {
    promise = weft_promise_of(h);
    return false;
  }
  PromiseBase* await_resume() const noexcept { return promise; }
  PromiseBase* promise = nullptr;
};

// Makes `task` run in `scope` instead of its awaiter's.
template <class T>
Task<T>&& in_scope(Task<T>&& task, CancelState* scope) noexcept {
  task.handle().promise().cancel = scope;
  task.handle().promise().scope_fixed = true;
  return std::move(task);
}

template <class T>
Task<T> with_cancellation_impl(CancellationToken token, Task<T> task) {
  PromiseBase* self = co_await CurrentPromise{};
  CancelState scope(self != nullptr ? self->cancel : nullptr);
  CancellationCallback link(std::move(token), [&scope]() noexcept { scope.cancel(); });
  co_return co_await in_scope(std::move(task), &scope);
}

template <class T>
Task<T> shield_impl(Task<T> task) {
  CancelState scope;  // no parent: outer cancellation (and outer deadlines) cannot reach it
  co_return co_await in_scope(std::move(task), &scope);
}

}  // namespace detail

// Runs `task` in the caller's scope, and also cancels it when `token` is cancelled (it then
// ends with Cancelled, which propagates out of the await).
//
//   co_await with_cancellation(user_session.token(), render(page));
template <class T>
Task<T> with_cancellation(CancellationToken token, Task<T> task) {
  detail::require_fresh(task.handle(), "with_cancellation");
  const bool shielded = task.handle().promise().shielded;
  Task<T> wrapper = detail::with_cancellation_impl(std::move(token), std::move(task));
  // Around a shield, the wrapper starts like the shield would (see shield()).
  wrapper.handle().promise().shielded = shielded;
  return wrapper;
}

// Runs `task` immune to the caller's cancellation, even when awaited by an already-cancelled
// task: for cleanup that must finish. It is immune to the caller's deadlines too (Trio's
// rule): this_task::deadline() inside is Deadline::never() and an enclosing timeout() that
// expires does not cancel it (its value, once it returns, is kept). Deadlines and
// cancellations set up inside `task` still apply. The caller sees its own cancellation at its
// next suspension point after the await.
//
//   catch (const Cancelled&) { co_await shield(flush_journal()); throw; }
template <class T>
Task<T> shield(Task<T> task) {
  detail::require_fresh(task.handle(), "shield");
  Task<T> wrapper = detail::shield_impl(std::move(task));
  // Whoever starts it (an await, a gather, a spawn, a timeout), a cancelled starter cannot
  // stop it before it begins: it brings a scope of its own.
  wrapper.handle().promise().scope_fixed = true;
  wrapper.handle().promise().shielded = true;
  return wrapper;
}

// Any other awaitable (a gather, a task_group, ...), wrapped into a Task first.
template <class A>
  requires detail::non_task_awaitable<A&&>
auto shield(A&& awaitable) {
  return shield(detail::as_task(std::forward<A>(awaitable)));
}
template <class A>
  requires detail::non_task_awaitable<A&&>
auto with_cancellation(CancellationToken token, A&& awaitable) {
  return with_cancellation(std::move(token), detail::as_task(std::forward<A>(awaitable)));
}

}  // namespace weft

// co_await settled(task) -> Outcome<T>: runs `task` like `co_await task`, but hands back how it
// ended instead of rethrowing. For primitives that collect outcomes (wait_any, as_completed):
// catching the exception instead would mark the awaiting task as one that received
// Cancelled, and report it as swallowing a cancellation when it then returns normally.
#pragma once

#include <coroutine>

#include "weft/outcome.hpp"
#include "weft/task.hpp"

namespace weft::detail {

template <class T>
class SettledAwaiter {
 public:
  explicit SettledAwaiter(Task<T> task) : task_(std::move(task)) {}
  bool await_ready() const {
    require_fresh(task_.handle(), "settled");
    return false;
  }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P> awaiting) noexcept {
    auto& child = task_.handle().promise();
    awaiting_ = weft_promise_of(awaiting);
    if (awaiting_ != nullptr) {
      if (!child.scope_fixed) child.cancel = awaiting_->cancel;
      child.context = awaiting_->context;
    }
    child.continuation = awaiting;
    return task_.handle();
  }
  Outcome<T> await_resume() {
    auto& child = task_.handle().promise();
    resume_in(awaiting_);  // this thread ran the child: it is our task again
    if (child.exception) return Outcome<T>::from_exception(child.exception);
    return Outcome<T>::from_value(child.take_stored());
  }

 private:
  Task<T> task_;
  PromiseBase* awaiting_ = nullptr;
};

template <class T>
SettledAwaiter<T> settled(Task<T> task) {
  return SettledAwaiter<T>(std::move(task));
}

}  // namespace weft::detail

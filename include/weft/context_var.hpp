// ContextVar<T>: a task-local value that children inherit (asyncio's contextvars, tokio's
// task_local).
//
//   inline weft::ContextVar<std::string> request_id("-");
//
//   weft::Task<void> handle(Request r) {
//     request_id.set(r.id);                              // this task, and what it starts next
//     co_await weft::safe_gather(load(r), audit(r));     // both see r.id
//   }
//   weft::Task<void> audit(Request r) { log(request_id.get(), "audit"); co_return; }
//
// Semantics:
// - get() returns the value bound in the running task, else the one it inherited, else the
//   initial value. Outside a weft task (a plain thread) it returns the initial value.
// - set(x) binds x in the running task only: its children started after the set() see it
//   (spawn, safe_gather, wait_any, as_completed, timeout, timeout_scope, shield, a plain
//   co_await of a Task: every weft task is a child with its own bindings), the task's parent
//   and siblings never do, and a child's set() never reaches its parent. A child sees the
//   bindings its parent had when the child started, not later ones. to_thread() calls see
//   copies of the awaiting task's bindings (values that are not copyable are not visible
//   there); their set() stays in the call. A task submitted to a Runtime (submit, block_on)
//   starts with no bindings. set() outside a weft task throws UsageError.
// - A value set() stored lives until the task that set it ends: a reference returned by get()
//   stays valid until then. A ContextVar must outlive every task that uses it (make it static
//   or inline).
// - Cost: nothing for tasks that use no ContextVar (a child copies one pointer when it
//   starts); set() allocates one node, freed when its task ends; get() walks the bindings
//   visible to the task, newest first (one step per set() along the task's ancestry).
#pragma once

#include <new>
#include <type_traits>
#include <utility>

#include "weft/detail/context.hpp"
#include "weft/errors.hpp"
#include "weft/task.hpp"

namespace weft {

template <class T>
class ContextVar {
 public:
  explicit ContextVar(T initial = T{}) : initial_(std::move(initial)) {}
  ContextVar(const ContextVar&) = delete;
  ContextVar& operator=(const ContextVar&) = delete;

  // The running task's value (see the top of this file).
  const T& get() const noexcept {
    detail::ContextSlot slot{nullptr, nullptr};
    const detail::ContextNode* n = current(slot) ? *slot.head : nullptr;
    for (; n != nullptr; n = n->next)
      if (n->key == this) return static_cast<const Binding*>(n)->value;
    return initial_;
  }

  // Binds `value` in the running task (see the top of this file). UsageError outside a task.
  void set(T value) {
    detail::ContextSlot slot{nullptr, nullptr};
    if (!current(slot)) throw UsageError("ContextVar::set outside a weft task");
    auto* node = new Binding(std::move(value));
    node->key = this;
    node->next = *slot.head;
    node->bottom = !*slot.owns;  // its first own node: below are the inherited ones
    *slot.head = node;
    *slot.owns = true;
  }

 private:
  struct Binding : detail::ContextNode {
    explicit Binding(T v) : value(std::move(v)) {
      destroy = [](detail::ContextNode* self) noexcept { delete static_cast<Binding*>(self); };
      if constexpr (std::is_copy_constructible_v<T>) {
        clone = [](const detail::ContextNode* self) -> detail::ContextNode* {
          auto* copy = new Binding(static_cast<const Binding*>(self)->value);
          copy->key = self->key;
          return copy;
        };
      }
    }
    T value;
  };

  // The bindings of what runs on this thread: a to_thread call's, else the running task's.
  static bool current(detail::ContextSlot& slot) noexcept {
    if (detail::ContextSlot* call = detail::tl_context_override) {
      slot = *call;
      return true;
    }
    detail::PromiseBase* task = detail::tl_current_task;
    if (task == nullptr) return false;
    slot = detail::ContextSlot{&task->context, &task->owns_context};
    return true;
  }

  T initial_;
};

}  // namespace weft

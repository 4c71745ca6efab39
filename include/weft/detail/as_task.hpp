// Composable awaitables (SPEC §1): whatever weft hands back to be co_awaited (a gather, a
// task_group, h.join(), a this_task awaitable, ...) is accepted wherever a Task is, by being
// wrapped into a Task here. The wrapping costs one coroutine frame, paid only by callers that
// pass an awaitable where a Task was expected: `co_await safe_gather(...)` itself is untouched.
#pragma once

#include <concepts>
#include <type_traits>
#include <utility>

#include "weft/task.hpp"

namespace weft::detail {

template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<Task<T>> = true;

template <class A>
concept has_member_co_await = requires(A&& a) { std::forward<A>(a).operator co_await(); };

template <class A>
decltype(auto) awaiter_of(A&& a) {
  if constexpr (has_member_co_await<A>) return std::forward<A>(a).operator co_await();
  else return std::forward<A>(a);
}

template <class A>
concept awaitable = has_member_co_await<A> || requires(std::remove_cvref_t<A>& a) {
  a.await_ready();
  a.await_resume();
};

// What `co_await a` gives, with references decayed (a Task holds values).
template <class A>
using await_result_t = std::decay_t<decltype(awaiter_of(std::declval<A>()).await_resume())>;

// An awaitable other than a Task, passed by value (a temporary): what the wrappers accept.
template <class A>
concept non_task_awaitable = awaitable<A> && !is_task_v<std::remove_cvref_t<A>> &&
                             !std::is_lvalue_reference_v<A> &&
                             std::move_constructible<std::remove_cvref_t<A>>;

// The coroutine that awaits `a`: a Task like any other.
// The awaitable is moved into a local, so that it (a group, a gather's scope) is destroyed
// before the task ends: parameter copies outlive the promise, and with it the scope a
// TaskGroup child runs in, which the awaitable's own scope is linked below.
template <class A>
Task<await_result_t<A>> as_task(A a) {
  A awaitable = std::move(a);
  if constexpr (std::is_void_v<await_result_t<A>>) co_await std::move(awaitable);
  else co_return co_await std::move(awaitable);
}

// A Task as it is; any other awaitable wrapped by as_task().
template <class A>
auto to_task(A&& a) {
  if constexpr (is_task_v<std::remove_cvref_t<A>>) return std::move(a);
  else return as_task(std::forward<A>(a));
}

template <class A>
using task_of_t = decltype(to_task(std::declval<A>()));

}  // namespace weft::detail

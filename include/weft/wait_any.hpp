// wait_any: run tasks in parallel, keep the first to finish, cancel and await the rest.
//
//   WaitAny<Reply> first = co_await wait_any(ask(replica_a), ask(replica_b), ask(replica_c));
//   use(first.index, first.outcome.value());   // value() rethrows if that replica failed
//
// All tasks start at once, in a scope of their own below the caller's. The first task to
// finish, with a value or with an exception (a failure is a finish too: asyncio's
// FIRST_COMPLETED), wins: the others are cancelled and awaited, and the call returns the
// winner's index (in argument order) and Outcome. Nothing keeps running after it returns.
// - The losers' outcomes are dropped, failures included: they were cancelled because the
//   caller had what it asked for.
// - If the caller is cancelled, every task is cancelled and awaited and Cancelled propagates.
// - At least one task is required (UsageError otherwise); every task must be fresh.
// Must be awaited from a task running on a weft runtime (UsageError otherwise).
#pragma once

#include <atomic>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/cancellation.hpp"
#include "weft/detail/as_task.hpp"
#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/settled.hpp"
#include "weft/errors.hpp"
#include "weft/outcome.hpp"
#include "weft/safe_gather.hpp"
#include "weft/task.hpp"

namespace weft {

template <class T>
struct WaitAny {
  std::size_t index;   // the winner's position among the arguments
  Outcome<T> outcome;  // how it finished
};

namespace detail {

struct Race {
  static constexpr std::size_t kNoWinner = std::numeric_limits<std::size_t>::max();
  // acq_rel CAS: one winner; the gather's join orders it before the read in wait_any().
  detail::atomic<std::size_t> winner{kNoWinner};
  CancellationSource losers;  // cancelled by the winner
};

template <class T>
Task<Outcome<T>> race_entrant(std::size_t index, Task<T> task, Race& race) {
  Outcome<T> outcome = co_await settled(with_cancellation(race.losers.token(), std::move(task)));
  std::size_t none = Race::kNoWinner;
  if (race.winner.compare_exchange_strong(none, index, std::memory_order_acq_rel))
    race.losers.cancel();
  co_return outcome;
}

}  // namespace detail

// co_await wait_any(std::vector<Task<T>>) -> WaitAny<T>; see the top of this file.
template <class T>
Task<WaitAny<T>> wait_any(std::vector<Task<T>> tasks) {
  if (tasks.empty()) throw UsageError("wait_any: needs at least one task");
  for (const Task<T>& t : tasks) detail::require_fresh(t.handle(), "wait_any");
  detail::Race race;
  std::vector<Task<Outcome<T>>> entrants;
  entrants.reserve(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i)
    entrants.push_back(detail::race_entrant(i, std::move(tasks[i]), race));
  // return_exceptions: an entrant never fails (it returns its task's Outcome); the gather
  // throws only Cancelled, when the caller is cancelled.
  std::vector<Outcome<Outcome<T>>> outcomes =
      co_await safe_gather(return_exceptions, std::move(entrants));
  const std::size_t winner = race.winner.load(std::memory_order_relaxed);
  co_return WaitAny<T>{winner, std::move(outcomes[winner].value())};
}

// co_await wait_any(a, b, ...) -> WaitAny<T>: the same, for tasks of one type T.
template <class T, class... More>
  requires(std::is_same_v<Task<T>, More> && ...)
Task<WaitAny<T>> wait_any(Task<T> first, More... more) {
  std::vector<Task<T>> tasks;
  tasks.reserve(1 + sizeof...(More));
  tasks.push_back(std::move(first));
  (tasks.push_back(std::move(more)), ...);
  return wait_any(std::move(tasks));
}

// wait_any over awaitables (gathers, task_groups, joins, ...) of one result type, each
// wrapped into a Task.
template <class... As>
  requires(sizeof...(As) > 0 && (detail::awaitable<As&&> && ...) &&
           !(detail::is_task_v<std::remove_cvref_t<As>> && ...))
auto wait_any(As&&... awaitables) {
  return wait_any(detail::to_task(std::forward<As>(awaitables))...);
}

}  // namespace weft

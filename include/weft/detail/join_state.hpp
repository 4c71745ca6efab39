// The join protocol behind safe_gather (and, later, TaskGroup): how the children of one fork
// are counted back in without an atomic operation in the common case.
//
// Protocol:
//   A gather on worker W with n children pushes children n..2 onto W's deque (so child 2 is
//   at the bottom) and transfers control straight into child 1. From then on W runs "inline":
//   each time a child finishes on W, W pops the next child from the bottom of its own deque
//   and transfers into it, until every child has run. This is the only path in a fork-join
//   program that never loses a race, and it is made free of atomics:
//
//   - `local_done` counts children finished inline on W. It is a plain integer: only W
//     touches it, and only while inline.
//   - `pending` is the atomic count of children not yet accounted for, plus one for the
//     inline run itself. Children that finish anywhere else (stolen by another worker, or
//     resumed on W after the inline run ended) subtract 1 from it; the inline run subtracts
//     `local_done + 1` once, when it ends early. Whoever brings it to zero resumes the parent.
//   - If all n finish inline, `pending` is never touched and the last child resumes the parent
//     directly: a whole fork-join with no locked instruction beyond the deque's pop.
//
//   The inline run ends early when:
//   - the next child is no longer at the bottom of W's deque. Thieves take from the top (the
//     oldest items), so if any of our children are left they are at the bottom unless
//     something newer was pushed above them; `base + unpopped` is the bottom index at which
//     our next child must sit, and anything else ends the run;
//   - a child suspends (waits for its own stolen children, a timer, ...) and control returns
//     to W's scheduler loop. The loop then settles every gather still open on W (innermost
//     first), since nothing that finishes later can know whether it is still "inline".
//
// Invariants:
//   - `inline_run` is true only while W's current chain of symmetric transfers is the one
//     that started the gather; it is read only by W (a completion elsewhere compares `owner`
//     with its own worker first, and `owner` never changes while children run).
//   - Open gathers on W form a stack (W's `open_runs`, shared with TaskGroups): inline runs nest strictly.
//   - Until the inline run settles, `pending` cannot reach zero, so the parent (which owns
//     this state) cannot resume and free it while W may still settle it.
#pragma once

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstdint>

#include "weft/detail/atomic_shim.hpp"
#include "weft/detail/cancel_state.hpp"
#include "weft/detail/worker.hpp"

namespace weft::detail {

struct PromiseBase;

// A fork (a gather's JoinState, a TaskGroup's GroupState) whose children are being run inline
// on the worker that started it, counted without atomics. Open runs on a worker form a stack
// (Worker::open_runs), innermost first; the scheduler loop settles all of them each time
// control returns to it.
struct InlineRun {
  // Ends the inline run (the run is already off the stack) and returns the coroutine to
  // schedule, or noop.
  std::coroutine_handle<> (*settle_run)(InlineRun* self) noexcept;
  InlineRun* next_open = nullptr;

  void open(Worker& w) noexcept {
    next_open = w.open_runs;
    w.open_runs = this;
  }
  void close(Worker& w) noexcept {
    assert(w.open_runs == this && "inline runs nest strictly");
    w.open_runs = next_open;
  }
};

struct JoinState : InlineRun {
  JoinState() noexcept : InlineRun{&settle_join} {}

  // Called by the gather on worker `w` just before pushing children n..2. After it returns,
  // the fields below are written only by `w` while inline, and are published to thieves by
  // the deque push's release store.
  void start(std::coroutine_handle<> awaiting, Worker& w, std::uint32_t n) noexcept {
    parent = awaiting;
    owner = &w;
    total = n;
    local_done = 0;
    unpopped = n - 1;
    base = w.deque.bottom_index();
    inline_run = true;
    // One count per child, plus one held by the inline run until it settles: without it, a
    // run that finished no child inline could see every child finish elsewhere and the
    // parent free this state before the loop settles it.
    pending.store(n + 1, std::memory_order_relaxed);  // published by the pushes that follow
    open(w);
  }

  // The final step of every child: returns the coroutine to transfer to (the next child, the
  // parent, or noop to return to the scheduler loop).
  std::coroutine_handle<> child_done() noexcept {
    Worker* w = tl_worker;
    if (w == owner && inline_run) {
      if (++local_done == total) {
        close(*w);
        return parent;
      }
      if (unpopped > 0) {
        if (void* next = w->pop_own_child(base + unpopped)) {
          --unpopped;
          return std::coroutine_handle<>::from_address(next);
        }
      }
      close(*w);
      return settle();
    }
    // acq_rel: release publishes this child's result; the acquire of the last decrement
    // sees every other child's result before it resumes the parent.
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) return parent;
    return std::noop_coroutine();
  }

  // Ends the inline run: hands the children finished inline, and the run's own count, over
  // to the atomic count. Must be called on `owner`, after the gather was removed from its
  // open stack; touches nothing of this state after the subtraction.
  std::coroutine_handle<> settle() noexcept {
    inline_run = false;
    const std::uint32_t release = local_done + 1;
    // acq_rel: as in child_done().
    if (pending.fetch_sub(release, std::memory_order_acq_rel) == release) return parent;
    return std::noop_coroutine();
  }

  // First failure wins; later ones are dropped (their tasks are still awaited). The first
  // one cancels `cancel_on_failure`, the fail-fast gather's scope, when there is one.
  void record_failure(PromiseBase* child) noexcept {
    PromiseBase* none = nullptr;
    // Relaxed: the parent reads it only after the join, which orders it (see child_done()).
    if (first_failure.compare_exchange_strong(none, child, std::memory_order_relaxed) &&
        cancel_on_failure != nullptr)
      cancel_on_failure->cancel();
  }

  // Set by start(), before any child runs, and not before (a gather makes one of these per
  // fork, on the hot path: zero-filling them first cost more than the fork's own stores).
  std::coroutine_handle<> parent;
  Worker* owner;
  std::int64_t base;
  std::uint32_t total;
  std::uint32_t local_done;
  std::uint32_t unpopped;
  bool inline_run;
  detail::atomic<std::uint32_t> pending;

  detail::atomic<PromiseBase*> first_failure{nullptr};
  CancelState* cancel_on_failure = nullptr;

 private:
  static std::coroutine_handle<> settle_join(InlineRun* self) noexcept {
    return static_cast<JoinState*>(self)->settle();
  }
};

// Called by the scheduler loop each time control comes back to it: no fork is inline any
// more. A parent whose join completes by settling (see the invariants above) is pushed onto
// the worker's own deque, where the loop finds it next.
inline void settle_open_runs(Worker& w) {
  while (InlineRun* r = w.open_runs) {
    w.open_runs = r->next_open;
    std::coroutine_handle<> h = r->settle_run(r);
    if (h != std::noop_coroutine()) w.deque.push(h.address());
  }
}

}  // namespace weft::detail

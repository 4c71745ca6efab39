// The shared state behind a cancellation scope, as the task machinery sees it.
#pragma once

#include <atomic>

namespace weft::detail {

// Every task holds a pointer to the CancelState of the scope it runs in (inherited from the
// task that started it), so checking for cancellation on the await and spawn paths is one
// relaxed load.
struct CancelState {
  // Relaxed everywhere: a flag that only decides whether to throw Cancelled. The data a
  // cancelled task goes on to touch is published by the join that follows, not by this flag.
  std::atomic<bool> cancelled{false};

  bool is_cancelled() const noexcept { return cancelled.load(std::memory_order_relaxed); }
  bool cancel() noexcept { return !cancelled.exchange(true, std::memory_order_relaxed); }
};

}  // namespace weft::detail

// Helpers for the tests of the waiting primitives (Lock, Condition, Queue): yield_until, a
// random canceller for the stress tests (each operation runs plainly, under a random timeout,
// or under a fresh CancellationSource that a canceller thread cancels at a random moment), and
// the producers-and-consumers gather.
#pragma once

#include <weft/weft.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace weft_test {

// Yields until `pred()` holds (other tasks on the runtime run meanwhile). On a 1-worker
// runtime a task seen to have arrived somewhere, by a task that yielded meanwhile, has run
// up to its next park.
template <class Pred>
weft::Task<void> yield_until(Pred pred) {
  HangGuard guard;
  while (!pred() && !guard.expired()) co_await weft::this_task::yield();
}

// Runs `body(tg)` as the body of a task group on a runtime of `workers` workers, and waits.
//
//   in_a_group(1, [&](weft::TaskGroup& tg) -> weft::Task<void> { ...; co_return; });
template <class Body>
void in_a_group(unsigned workers, Body body) {
  weft::Runtime rt({.workers = workers});
  rt.block_on([](Body& body) -> weft::Task<void> {
    co_await weft::task_group([&](weft::TaskGroup& tg) -> weft::Task<void> { co_await body(tg); });
  }(body));
}

// Runs the producers and the consumers at once; returns what each consumer returned.
template <class R>
weft::Task<std::vector<R>> producers_and_consumers(std::vector<weft::Task<void>> producers,
                                                   std::vector<weft::Task<R>> consumers) {
  auto [unused, got] = co_await weft::safe_gather(weft::safe_gather(std::move(producers)),
                                                  weft::safe_gather(std::move(consumers)));
  (void)unused;
  co_return std::move(got);
}

// A foreign thread that cancels the sources operations registered, at random moments.
class RandomCanceller {
 public:
  explicit RandomCanceller(std::uint64_t seed) : thread_([this, seed] { run(seed); }) {}
  ~RandomCanceller() {
    stop_.store(true);
    thread_.join();
  }
  RandomCanceller(const RandomCanceller&) = delete;
  RandomCanceller& operator=(const RandomCanceller&) = delete;

  // A source for one operation, published to the canceller.
  weft::CancellationSource fresh_source(Rng& rng) {
    weft::CancellationSource source;
    std::lock_guard<std::mutex> lock(mutex_);
    slots_[rng.below(kSlots)] = source;
    return source;
  }

  long cancels() const { return cancels_.load(); }

  // Runs `task` plainly (half the time), under a random timeout of 0 to 300 us, or under a
  // fresh source this canceller may cancel.
  template <class T>
  weft::Task<T> wrap(Rng& rng, weft::Task<T> task) {
    switch (rng.below(4)) {
      case 2:
        return weft::timeout(std::chrono::microseconds(rng.below(300)), std::move(task));
      case 3:
        return weft::with_cancellation(fresh_source(rng).token(), std::move(task));
      default:
        return task;
    }
  }

 private:
  static constexpr std::uint64_t kSlots = 16;

  void run(std::uint64_t seed) {
    Rng rng{seed};
    while (!stop_.load()) {
      weft::CancellationSource victim;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        victim = slots_[rng.below(kSlots)];
      }
      if (victim.cancel()) cancels_.fetch_add(1);
      // A busy wait the compiler keeps (the fence is a compiler barrier).
      for (std::uint64_t spin = rng.below(2000); spin > 0; --spin)
        std::atomic_signal_fence(std::memory_order_seq_cst);
      if (rng.below(8) == 0) std::this_thread::yield();
    }
  }

  std::mutex mutex_;
  weft::CancellationSource slots_[kSlots];
  std::atomic<bool> stop_{false};
  std::atomic<long> cancels_{0};
  std::thread thread_;
};

}  // namespace weft_test

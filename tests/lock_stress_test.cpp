// Lock under load: 10,000 tasks on a 4-worker runtime take one Lock in turn, each lock() run
// plainly, under a random timeout, or under a source a foreign thread cancels at a random
// moment; holders keep the lock across a few suspensions (where a cancellation may strike:
// the guard then unlocks). Checked: never two holders at once; a plain counter incremented
// under the lock equals the number of acquisitions; every task either acquired or saw its
// cancellation; the lock ends free.
#include <weft/lock.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "waiting_support.hpp"

namespace {

using weft_test::RandomCanceller;
using weft_test::Rng;

using weft::Cancelled;
using weft::Lock;
using weft::LockGuard;
using weft::Task;
using weft::TimeoutError;

constexpr int kTasks = 10'000;

struct Census {
  Lock lock;
  long counter = 0;  // guarded by lock; plain, so that TSan checks the exclusion
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  std::atomic<int> acquired{0};
  std::atomic<int> completed{0};  // held the lock to the end of hold()
  std::atomic<int> gave_up{0};    // Cancelled or TimeoutError, waiting or holding
};

Task<void> hold(Census& c, int yields) {
  LockGuard g = co_await c.lock.lock();
  c.acquired.fetch_add(1, std::memory_order_relaxed);
  const int now = c.inside.fetch_add(1) + 1;
  int seen = c.most_inside.load();
  while (now > seen && !c.most_inside.compare_exchange_weak(seen, now)) {
  }
  // Destroyed before `g`: leaves before the lock is free again, also when cancelled.
  struct Leave {
    Census& c;
    ~Leave() { c.inside.fetch_sub(1); }
  } leave{c};
  const long before = c.counter;
  for (int i = 0; i < yields; ++i) co_await weft::this_task::yield();
  c.counter = before + 1;
  c.completed.fetch_add(1, std::memory_order_relaxed);
}

Task<void> contender(Census& c, RandomCanceller& canceller, std::uint64_t seed) {
  Rng rng{seed};
  const int yields = static_cast<int>(rng.below(3));
  try {
    co_await canceller.wrap(rng, hold(c, yields));
  } catch (const TimeoutError&) {
    c.gave_up.fetch_add(1, std::memory_order_relaxed);
  } catch (const Cancelled&) {
    c.gave_up.fetch_add(1, std::memory_order_relaxed);
  }
}

TEST(LockStress, TenThousandTasksTakeTheLockInTurnWithRandomCancellationsAndNeverTwoHoldIt) {
  weft::Runtime rt({.workers = 4});
  const int rounds = weft_test::kSanitized ? 1 : 3;
  for (int round = 0; round < rounds; ++round) {
    Census c;
    long counted_increments = 0;
    {
      RandomCanceller canceller(static_cast<std::uint64_t>(round) * 13 + 1);
      rt.block_on([&]() -> Task<void> {
        std::vector<Task<void>> tasks;
        tasks.reserve(kTasks);
        for (int i = 0; i < kTasks; ++i)
          tasks.push_back(contender(c, canceller, static_cast<std::uint64_t>(round * kTasks + i + 1) *
                                                      0x9e3779b97f4a7c15ULL));
        co_await weft::safe_gather(std::move(tasks));
      }());
      RecordProperty("cancels_round_" + std::to_string(round), static_cast<int>(canceller.cancels()));
    }
    counted_increments = c.counter;
    EXPECT_EQ(c.most_inside.load(), 1) << "two tasks held the lock at once; round " << round;
    EXPECT_EQ(c.inside.load(), 0);
    EXPECT_FALSE(c.lock.locked()) << "round " << round;
    // A holder cancelled in its yields did not increment; every other holder did once.
    EXPECT_EQ(counted_increments, c.completed.load()) << "an increment under the lock was lost";
    EXPECT_LE(c.completed.load(), c.acquired.load());
    EXPECT_EQ(c.completed.load() + c.gave_up.load(), kTasks) << "a task neither finished nor gave up";
    RecordProperty("acquired_round_" + std::to_string(round), c.acquired.load());
    RecordProperty("gave_up_round_" + std::to_string(round), c.gave_up.load());
    if (HasFailure()) break;
  }
}

}  // namespace

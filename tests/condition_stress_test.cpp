// Condition under load: 2 producers append items to a deque under a Lock and notify_one; 6
// consumers take them in predicate loops (`while (empty && !done) wait`), each wait run
// plainly, under a random timeout, or under a source a foreign thread cancels at a random
// moment (a wait that throws still holds the lock, so the loop goes on). Checked: every item
// is taken exactly once; the guard holds the lock whenever a wait ends; and no wait returns
// without a notification: wait() returns at most once per notify_one() call (no spurious
// wake-ups; a cancelled waiter consumes none).
#include <weft/condition.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "waiting_support.hpp"

namespace {

using weft_test::RandomCanceller;
using weft_test::Rng;

using weft::Cancelled;
using weft::Condition;
using weft::Lock;
using weft::LockGuard;
using weft::Task;
using weft::TimeoutError;

constexpr int kProducers = 2;
constexpr int kConsumers = 6;

struct Shared {
  Lock lock;
  Condition cond{lock};
  std::deque<int> items;  // guarded by lock
  bool done = false;      // guarded by lock
  std::atomic<long> notifies{0};
  std::atomic<long> returns{0};      // waits that returned normally
  std::atomic<long> gave_up{0};      // waits that threw
  std::atomic<long> lock_missing{0};  // waits that ended without the lock
};

Task<void> producer(Shared& s, int p, int n, std::atomic<int>& left) {
  for (int i = 0; i < n; ++i) {
    LockGuard g = co_await s.lock.lock();
    s.items.push_back(p * n + i);
    s.notifies.fetch_add(1);  // before the notify: a return can only follow it
    s.cond.notify_one();
    // Let the consumers drain the deque, so that most of them park between items.
    g.unlock();
    for (int k = 0; k < 4; ++k) co_await weft::this_task::yield();
  }
  if (left.fetch_sub(1) == 1) {
    LockGuard g = co_await s.lock.lock();
    s.done = true;
    // One notify per consumer that may be parked: the ones not parked see `done` first.
    for (int c = 0; c < kConsumers; ++c) {
      s.notifies.fetch_add(1);
      s.cond.notify_one();
    }
  }
}

Task<std::vector<int>> consumer(Shared& s, RandomCanceller& canceller, int c) {
  Rng rng{static_cast<std::uint64_t>(c + 1) * 0xbf58476d1ce4e5b9ULL};
  std::vector<int> got;
  LockGuard g = co_await s.lock.lock();
  for (;;) {
    while (s.items.empty() && !s.done) {
      bool returned = false;
      try {
        co_await canceller.wrap(rng, s.cond.wait(g));
        returned = true;
      } catch (const TimeoutError&) {
      } catch (const Cancelled&) {
      }
      (returned ? s.returns : s.gave_up).fetch_add(1);
      if (!g.owns_lock()) {
        s.lock_missing.fetch_add(1);
        co_return got;  // a failure: do not touch the deque without the lock
      }
    }
    if (s.items.empty()) break;  // done and drained
    got.push_back(s.items.front());
    s.items.pop_front();
    if (got.size() % 4 == 0) {
      g.unlock();
      co_await weft::this_task::yield();
      g = co_await s.lock.lock();
    }
  }
  co_return got;
}

TEST(ConditionStress, PredicateLoopsWithRandomCancellationsTakeEveryItemOnceWithoutSpuriousWakeUps) {
  const int per_producer = weft_test::kSanitized ? 2000 : 20'000;
  const int rounds = weft_test::kSanitized ? 1 : 2;
  weft::Runtime rt({.workers = 4});
  for (int round = 0; round < rounds; ++round) {
    Shared s;
    std::atomic<int> left{kProducers};
    std::vector<std::vector<int>> per_consumer;
    {
      RandomCanceller canceller(static_cast<std::uint64_t>(round) * 31 + 3);
      std::vector<Task<void>> producers;
      for (int p = 0; p < kProducers; ++p) producers.push_back(producer(s, p, per_producer, left));
      std::vector<Task<std::vector<int>>> consumers;
      for (int c = 0; c < kConsumers; ++c) consumers.push_back(consumer(s, canceller, c));
      per_consumer = rt.block_on(
          weft_test::producers_and_consumers(std::move(producers), std::move(consumers)));
      RecordProperty("cancels_round_" + std::to_string(round), static_cast<int>(canceller.cancels()));
    }
    EXPECT_EQ(s.lock_missing.load(), 0) << "a wait ended without the lock";
    EXPECT_LE(s.returns.load(), s.notifies.load()) << "more waits returned than notifies were made";
    std::vector<int> seen(static_cast<std::size_t>(kProducers) * per_producer, 0);
    for (const auto& got : per_consumer)
      for (int item : got) ++seen[static_cast<std::size_t>(item)];
    for (std::size_t i = 0; i < seen.size(); ++i)
      ASSERT_EQ(seen[i], 1) << "item " << i << " taken " << seen[i] << " times; round " << round;
    EXPECT_TRUE(s.items.empty());
    EXPECT_FALSE(s.lock.locked());
    RecordProperty("wait_returns_round_" + std::to_string(round), static_cast<int>(s.returns.load()));
    RecordProperty("wait_gave_up_round_" + std::to_string(round), static_cast<int>(s.gave_up.load()));
  }
}

}  // namespace

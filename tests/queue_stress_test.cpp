// Queue<int>(16) under load: 4 producers and 4 consumers on a 4-worker runtime, every push and
// pop run plainly, under a random timeout, or under a source a foreign thread cancels at a
// random moment. A push that throws is retried (its value never entered); a pop that throws
// took nothing. Checked: the multiset of delivered items is exactly the multiset pushed (every
// item once: nothing lost, nothing duplicated), and each consumer sees each producer's items
// in the order they were pushed (FIFO).
#include <weft/queue.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "waiting_support.hpp"

namespace {

using weft_test::RandomCanceller;
using weft_test::Rng;

using weft::Cancelled;
using weft::Queue;
using weft::Task;
using weft::TimeoutError;

constexpr int kProducers = 4;
constexpr int kConsumers = 4;
constexpr std::size_t kCapacity = 16;

struct Counts {
  std::atomic<long> push_failures{0};
  std::atomic<long> pop_failures{0};
};

Task<void> push_value(Queue<int>& q, int value) { co_await q.push(std::move(value)); }
Task<std::optional<int>> pop_value(Queue<int>& q) { co_return co_await q.pop(); }

Task<void> producer(Queue<int>& q, RandomCanceller& canceller, Counts& counts, int p, int n,
                    std::atomic<int>& producers_left) {
  Rng rng{static_cast<std::uint64_t>(p + 1) * 0x9e3779b97f4a7c15ULL};
  for (int i = 0; i < n; ++i) {
    for (;;) {
      bool entered = false;
      try {
        co_await canceller.wrap(rng, push_value(q, p * n + i));
        entered = true;
      } catch (const TimeoutError&) {
      } catch (const Cancelled&) {
      }
      if (entered) break;
      counts.push_failures.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (producers_left.fetch_sub(1) == 1) q.close();
}

Task<std::vector<int>> consumer(Queue<int>& q, RandomCanceller& canceller, Counts& counts,
                                int c) {
  Rng rng{static_cast<std::uint64_t>(c + 101) * 0xbf58476d1ce4e5b9ULL};
  std::vector<int> got;
  for (;;) {
    std::optional<int> item;
    bool returned = false;
    try {
      item = co_await canceller.wrap(rng, pop_value(q));
      returned = true;
    } catch (const TimeoutError&) {
    } catch (const Cancelled&) {
    }
    if (!returned) {
      counts.pop_failures.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (!item) break;  // closed and drained
    got.push_back(*item);
  }
  co_return got;
}

TEST(QueueStress, FourProducersAndFourConsumersWithRandomCancellationsAndTimeoutsDeliverEveryItemExactlyOnceInOrder) {
  const int per_producer = weft_test::kSanitized ? 1500 : 20'000;
  const int rounds = weft_test::kSanitized ? 1 : 2;
  weft::Runtime rt({.workers = 4});
  for (int round = 0; round < rounds; ++round) {
    Queue<int> q(kCapacity);
    Counts counts;
    RandomCanceller canceller(static_cast<std::uint64_t>(round) * 77 + 5);
    std::atomic<int> producers_left{kProducers};
    std::vector<Task<void>> producers;
    for (int p = 0; p < kProducers; ++p)
      producers.push_back(producer(q, canceller, counts, p, per_producer, producers_left));
    std::vector<Task<std::vector<int>>> consumers;
    for (int c = 0; c < kConsumers; ++c) consumers.push_back(consumer(q, canceller, counts, c));
    const std::vector<std::vector<int>> per_consumer = rt.block_on(
        weft_test::producers_and_consumers(std::move(producers), std::move(consumers)));
    std::vector<int> seen(static_cast<std::size_t>(kProducers) * per_producer, 0);
    for (const std::vector<int>& got : per_consumer) {
      std::vector<int> last(kProducers, -1);
      for (int item : got) {
        ASSERT_GE(item, 0);
        ASSERT_LT(static_cast<std::size_t>(item), seen.size());
        ++seen[static_cast<std::size_t>(item)];
        const int p = item / per_producer;
        EXPECT_GT(item, last[static_cast<std::size_t>(p)]) << "a producer's items out of order";
        last[static_cast<std::size_t>(p)] = item;
      }
    }
    for (std::size_t i = 0; i < seen.size(); ++i)
      ASSERT_EQ(seen[i], 1) << "item " << i << " delivered " << seen[i] << " times; round " << round;
    EXPECT_EQ(q.size(), 0u);
    RecordProperty("push_failures_round_" + std::to_string(round),
                   static_cast<int>(counts.push_failures.load()));
    RecordProperty("pop_failures_round_" + std::to_string(round),
                   static_cast<int>(counts.pop_failures.load()));
    RecordProperty("cancels_round_" + std::to_string(round),
                   static_cast<int>(canceller.cancels()));
  }
}

}  // namespace

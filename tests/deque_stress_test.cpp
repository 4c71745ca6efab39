// Stress test of weft/detail/deque.hpp: one owner pushing and popping races several thieves.
// Each round starts a fresh deque at capacity 2, so the ring grows (while thieves steal) many
// times over the run. Every item must be taken exactly once, by a pop or by a steal.
#include <weft/detail/deque.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::kSanitized;

using Deque = weft::detail::WorkStealingDeque<std::uintptr_t>;

struct Totals {
  std::uint64_t pushes = 0;
  std::uint64_t pops = 0;         // successful
  std::uint64_t steals = 0;       // successful
  std::uint64_t steal_tries = 0;  // all attempts
  std::uint64_t lost_races = 0;
  std::uint64_t growths = 0;
};

TEST(DequeStress, OneOwnerAndThreeThievesTakeEveryItemExactlyOnce) {
  constexpr int kThieves = 3;
  // Items pushed in all; every item is also taken once, so operations >= 2 * kItems.
  const std::uint64_t kItems = kSanitized ? 1'000'000 : 5'000'000;
  constexpr std::uint64_t kItemsPerRound = 20'000;

  // takes[i]: how many times item i + 1 was taken.
  std::vector<std::atomic<std::uint8_t>> takes(kItems);
  std::atomic<Deque*> current{nullptr};
  std::atomic<bool> round_over{false};
  std::atomic<bool> all_over{false};
  std::barrier sync(kThieves + 1);

  std::vector<Totals> thief_totals(kThieves);
  std::vector<std::thread> thieves;
  for (int k = 0; k < kThieves; ++k) {
    thieves.emplace_back([&, k] {
      Totals& t = thief_totals[k];
      for (;;) {
        sync.arrive_and_wait();  // round starts (or everything is over)
        if (all_over.load(std::memory_order_acquire)) return;
        Deque* d = current.load(std::memory_order_acquire);
        while (!round_over.load(std::memory_order_acquire)) {
          const Deque::StealResult r = d->steal();
          ++t.steal_tries;
          if (r.item != 0) {
            takes[r.item - 1].fetch_add(1, std::memory_order_relaxed);
            ++t.steals;
          } else if (r.lost_race) {
            ++t.lost_races;
          }
        }
        sync.arrive_and_wait();  // round ends: nobody touches the deque any more
      }
    });
  }

  Totals owner;
  std::uint64_t rng = 0x243f6a8885a308d3ULL;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  auto owner_pop = [&](Deque& d) {
    const std::uintptr_t item = d.pop();
    if (item == 0) return false;
    takes[item - 1].fetch_add(1, std::memory_order_relaxed);
    ++owner.pops;
    return true;
  };

  std::uint64_t pushed = 0;
  while (pushed < kItems) {
    auto d = std::make_unique<Deque>(2);
    current.store(d.get(), std::memory_order_release);
    round_over.store(false, std::memory_order_release);
    sync.arrive_and_wait();  // thieves start stealing from d

    const std::uint64_t round_end = std::min(kItems, pushed + kItemsPerRound);
    std::int64_t capacity = d->capacity();
    while (pushed < round_end) {
      // A burst of pushes, mostly longer than the pops that follow, so the deque fills up
      // (and grows) while the thieves drain it from the other end.
      const std::uint64_t burst = std::min<std::uint64_t>(1 + next() % 64, round_end - pushed);
      for (std::uint64_t i = 0; i < burst; ++i) {
        d->push(static_cast<std::uintptr_t>(++pushed));
        ++owner.pushes;
        if (d->capacity() != capacity) {
          capacity = d->capacity();
          ++owner.growths;
        }
      }
      const std::uint64_t pops = next() % (burst / 2 + 1);
      for (std::uint64_t i = 0; i < pops; ++i)
        if (!owner_pop(*d)) break;
    }
    // Drain: a pop that finds nothing means the deque is empty (only the owner pushes).
    while (owner_pop(*d)) {
    }
    EXPECT_EQ(d->pop(), 0u);
    EXPECT_TRUE(d->empty_hint());

    round_over.store(true, std::memory_order_release);
    sync.arrive_and_wait();  // every thief has left d: it can go
  }
  all_over.store(true, std::memory_order_release);
  sync.arrive_and_wait();
  for (std::thread& t : thieves) t.join();

  Totals total = owner;
  for (const Totals& t : thief_totals) {
    total.steals += t.steals;
    total.steal_tries += t.steal_tries;
    total.lost_races += t.lost_races;
  }
  EXPECT_EQ(total.pushes, kItems);
  EXPECT_EQ(total.pops + total.steals, kItems) << "items lost or taken twice";

  std::uint64_t never = 0;
  std::uint64_t twice = 0;
  for (std::uint64_t i = 0; i < kItems; ++i) {
    const std::uint8_t n = takes[i].load(std::memory_order_relaxed);
    if (n == 0) ++never;
    if (n > 1) ++twice;
  }
  EXPECT_EQ(never, 0u) << "items never taken";
  EXPECT_EQ(twice, 0u) << "items taken more than once";
  EXPECT_GT(total.growths, 100u) << "the ring should have grown many times";
  EXPECT_GE(total.pushes + total.pops + total.steal_tries, (kSanitized ? 2'000'000u : 10'000'000u));

  std::printf("pushes %llu, pops %llu, steals %llu (tries %llu, lost races %llu), growths %llu\n",
              static_cast<unsigned long long>(total.pushes),
              static_cast<unsigned long long>(total.pops),
              static_cast<unsigned long long>(total.steals),
              static_cast<unsigned long long>(total.steal_tries),
              static_cast<unsigned long long>(total.lost_races),
              static_cast<unsigned long long>(total.growths));
}

}  // namespace

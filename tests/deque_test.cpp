// weft/detail/deque.hpp: the Chase-Lev work-stealing deque, single-threaded behaviour and a
// small two-thread check (the racing stress test is deque_stress_test.cpp).
#include <weft/detail/deque.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

using Deque = weft::detail::WorkStealingDeque<std::uintptr_t>;

TEST(Deque, PopTakesTheMostRecentlyPushedItemFirst) {
  Deque d;
  for (std::uintptr_t i = 1; i <= 5; ++i) d.push(i);
  for (std::uintptr_t i = 5; i >= 1; --i) EXPECT_EQ(d.pop(), i);
  EXPECT_EQ(d.pop(), 0u);
}

TEST(Deque, StealTakesTheOldestItemFirst) {
  Deque d;
  for (std::uintptr_t i = 1; i <= 5; ++i) d.push(i);
  for (std::uintptr_t i = 1; i <= 5; ++i) {
    const Deque::StealResult r = d.steal();
    EXPECT_EQ(r.item, i);
    EXPECT_FALSE(r.lost_race);
  }
  EXPECT_EQ(d.steal().item, 0u);
}

TEST(Deque, PopAndStealTakeFromOppositeEnds) {
  Deque d;
  for (std::uintptr_t i = 1; i <= 4; ++i) d.push(i);
  EXPECT_EQ(d.steal().item, 1u);
  EXPECT_EQ(d.pop(), 4u);
  EXPECT_EQ(d.steal().item, 2u);
  EXPECT_EQ(d.pop(), 3u);
  EXPECT_EQ(d.pop(), 0u);
  EXPECT_EQ(d.steal().item, 0u);
}

TEST(Deque, PopOnAnEmptyDequeReturnsAnEmptyValue) {
  Deque d;
  EXPECT_EQ(d.pop(), 0u);
  EXPECT_EQ(d.pop(), 0u);
  // Still usable afterwards: a failed pop restores the bottom.
  d.push(7);
  EXPECT_EQ(d.pop(), 7u);
  EXPECT_EQ(d.pop(), 0u);
}

TEST(Deque, StealOnAnEmptyDequeReturnsAnEmptyValueWithoutALostRace) {
  Deque d;
  const Deque::StealResult r = d.steal();
  EXPECT_EQ(r.item, 0u);
  EXPECT_FALSE(r.lost_race);
  d.push(1);
  EXPECT_EQ(d.pop(), 1u);
  const Deque::StealResult after = d.steal();
  EXPECT_EQ(after.item, 0u);
  EXPECT_FALSE(after.lost_race);
}

TEST(Deque, EverythingStolenLeavesNothingToPop) {
  Deque d;
  d.push(1);
  d.push(2);
  EXPECT_EQ(d.steal().item, 1u);
  EXPECT_EQ(d.steal().item, 2u);
  EXPECT_EQ(d.pop(), 0u);
  EXPECT_TRUE(d.empty_hint());
}

TEST(Deque, CapacityIsRoundedUpToAPowerOfTwo) {
  EXPECT_EQ(Deque(3).capacity(), 4);
  EXPECT_EQ(Deque(4).capacity(), 4);
  EXPECT_EQ(Deque(1).capacity(), 2);
  EXPECT_EQ(Deque(1000).capacity(), 1024);
  EXPECT_EQ(Deque().capacity(), Deque::kInitialCapacity);
}

TEST(Deque, GrowingKeepsEveryItemInOrder) {
  Deque d(2);
  constexpr std::uintptr_t kItems = 1000;
  for (std::uintptr_t i = 1; i <= kItems; ++i) d.push(i);
  EXPECT_GE(d.capacity(), static_cast<std::int64_t>(kItems));
  EXPECT_EQ(d.size_hint(), static_cast<std::int64_t>(kItems));
  // The oldest half by stealing, in push order; the rest by popping, in reverse.
  for (std::uintptr_t i = 1; i <= kItems / 2; ++i) ASSERT_EQ(d.steal().item, i);
  for (std::uintptr_t i = kItems; i > kItems / 2; --i) ASSERT_EQ(d.pop(), i);
  EXPECT_EQ(d.pop(), 0u);
  EXPECT_EQ(d.steal().item, 0u);
}

TEST(Deque, GrowingAfterTheIndicesWrappedKeepsEveryItem) {
  Deque d(4);
  // Move top and bottom far past the capacity so that live items straddle the ring's end.
  for (std::uintptr_t i = 1; i <= 103; ++i) {
    d.push(i);
    if (i % 4 != 0) {
      ASSERT_EQ(d.steal().item, (i - i / 4)) << i;
    }
  }
  // Live now: the items not stolen above. Fill past the capacity several times.
  std::vector<std::uintptr_t> expected;
  while (d.size_hint() > 0) expected.push_back(d.steal().item);
  EXPECT_EQ(d.capacity(), 32) << "grew for the 25 items left";
  for (std::uintptr_t i = 0; i < expected.size(); ++i) d.push(expected[i]);
  for (std::uintptr_t i = 1000; i < 1100; ++i) d.push(i);
  for (std::uintptr_t v : expected) ASSERT_EQ(d.steal().item, v);
  for (std::uintptr_t i = 1000; i < 1100; ++i) ASSERT_EQ(d.steal().item, i);
  EXPECT_EQ(d.steal().item, 0u);
}

TEST(Deque, SizeHintAndBottomIndexFollowPushesAndTakes) {
  Deque d;
  EXPECT_TRUE(d.empty_hint());
  EXPECT_EQ(d.bottom_index(), 0);
  d.push(1);
  d.push(2);
  d.push(3);
  EXPECT_EQ(d.size_hint(), 3);
  EXPECT_EQ(d.bottom_index(), 3);
  (void)d.steal();
  EXPECT_EQ(d.size_hint(), 2);
  EXPECT_EQ(d.bottom_index(), 3) << "a steal moves the top, not the bottom";
  (void)d.pop();
  EXPECT_EQ(d.size_hint(), 1);
  EXPECT_EQ(d.bottom_index(), 2);
  (void)d.pop();
  EXPECT_TRUE(d.empty_hint());
}

TEST(Deque, PointersRoundTrip) {
  weft::detail::WorkStealingDeque<void*> d;
  int a = 0;
  int b = 0;
  d.push(&a);
  d.push(&b);
  EXPECT_EQ(d.steal().item, &a);
  EXPECT_EQ(d.pop(), &b);
  EXPECT_EQ(d.pop(), nullptr);
}

TEST(Deque, AThiefOnAnotherThreadSeesEveryPushedItem) {
  Deque d(2);
  constexpr std::uintptr_t kItems = 10'000;
  std::atomic<bool> done{false};
  std::vector<std::uintptr_t> stolen;
  std::thread thief([&] {
    for (;;) {
      const bool finished = done.load(std::memory_order_acquire);
      const Deque::StealResult r = d.steal();
      if (r.item != 0) {
        stolen.push_back(r.item);
      } else if (finished && !r.lost_race) {
        return;
      }
    }
  });
  for (std::uintptr_t i = 1; i <= kItems; ++i) d.push(i);
  done.store(true, std::memory_order_release);
  thief.join();
  // A single thief and an owner that never pops: everything, in push order.
  ASSERT_EQ(stolen.size(), kItems);
  for (std::uintptr_t i = 0; i < kItems; ++i) ASSERT_EQ(stolen[i], i + 1);
}

}  // namespace

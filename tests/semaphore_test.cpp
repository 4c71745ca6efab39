// weft/semaphore.hpp: Semaphore and SemaphorePermit (SPEC §7): FIFO-fair for multi-permit
// requests, cancellable acquires that never lose or leak a permit, try_acquire, RAII permits,
// and UsageError for misuse.
//
// Tests that depend on the order in which waiters queue run on a 1-worker runtime: a task
// runs from its "arrived" store to its park without interruption there, so a waiter seen to
// have arrived is queued before any task started afterwards.
#include <weft/semaphore.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

using weft_test::Eager;
using weft_test::HangGuard;
using weft_test::kSanitized;
using weft_test::spin_until;
using weft_test::TaskError;

using weft::Cancelled;
using weft::Future;
using weft::Runtime;
using weft::Semaphore;
using weft::SemaphorePermit;
using weft::Task;
using weft::UsageError;

// How acquirers ended.
struct Endings {
  std::atomic<int> arrived{0};
  std::atomic<int> acquired{0};
  std::atomic<int> cancelled{0};
};

// Acquires n permits, counts it, and releases them on return.
Task<void> acquire_once(Semaphore& sem, std::size_t n, Endings& ends) {
  ends.arrived.fetch_add(1);
  try {
    SemaphorePermit permit = co_await sem.acquire(n);
    ends.acquired.fetch_add(1);
  } catch (const Cancelled&) {
    ends.cancelled.fetch_add(1);
    throw;
  }
}

// acquire_once in a frame larger than the frame allocator's largest cached class, so that the
// frame goes back to the heap as soon as the task ends: ASan then reports anything that
// touches its waiter afterwards.
Task<void> acquire_once_in_a_heap_frame(Semaphore& sem, Endings& ends, unsigned seed) {
  std::array<unsigned char, 4096> ballast;
  for (std::size_t i = 0; i < ballast.size(); ++i)
    ballast[i] = static_cast<unsigned char>((i * seed) | 1u);
  ends.arrived.fetch_add(1);
  try {
    SemaphorePermit permit = co_await sem.acquire();
    ends.acquired.fetch_add(ballast[seed % ballast.size()] != 0 ? 1 : 2);
  } catch (const Cancelled&) {
    ends.cancelled.fetch_add(ballast[(seed * 7) % ballast.size()] != 0 ? 1 : 2);
    throw;
  }
}

// Lets waiters that have arrived get to park (only makes the parked path likelier; nothing
// depends on it).
void let_them_park() { std::this_thread::sleep_for(2ms); }

// A short busy wait that the compiler keeps.
void spin_pause() {
  static std::atomic<int> sink{0};
  sink.fetch_add(1, std::memory_order_relaxed);
}

// Yields until `pred()` holds (other tasks on the runtime run meanwhile).
template <class Pred>
Task<void> yield_until(Pred pred) {
  HangGuard guard;
  while (!pred() && !guard.expired()) co_await weft::this_task::yield();
}

// ----------------------------------------------------------------------------------------------
// Permits come and go

TEST(Semaphore, ANewSemaphoreHasAllItsPermitsFree) {
  Semaphore sem(5);
  EXPECT_EQ(sem.capacity(), 5u);
  EXPECT_EQ(sem.available(), 5u);
}

TEST(Semaphore, AcquireTakesPermitsAndReleasingThePermitReturnsThem) {
  Semaphore sem(3);
  Runtime rt({.workers = 1});
  rt.block_on([](Semaphore& sem) -> Task<void> {
    SemaphorePermit one = co_await sem.acquire();
    EXPECT_EQ(one.count(), 1u);
    EXPECT_EQ(sem.available(), 2u);
    SemaphorePermit two = co_await sem.acquire(2);
    EXPECT_EQ(two.count(), 2u);
    EXPECT_EQ(sem.available(), 0u);
    two.release();
    EXPECT_EQ(two.count(), 0u);
    EXPECT_EQ(sem.available(), 2u);
  }(sem));
  EXPECT_EQ(sem.available(), 3u) << "the permit's destructor did not release";
}

TEST(Semaphore, ALoopOfAcquiresAndReleasesLeavesEveryPermitFree) {
  Semaphore sem(2);
  Runtime rt({.workers = 1});
  const int rounds = rt.block_on([](Semaphore& sem) -> Task<int> {
    int rounds = 0;
    for (int i = 0; i < 100'000; ++i) {
      SemaphorePermit p = co_await sem.acquire(1 + static_cast<std::size_t>(i % 2));
      ++rounds;
    }
    co_return rounds;
  }(sem));
  EXPECT_EQ(rounds, 100'000);
  EXPECT_EQ(sem.available(), 2u);
}

TEST(Semaphore, TryAcquireTakesFreePermitsAndFailsWhenTooFewAreFree) {
  Semaphore sem(3);
  std::optional<SemaphorePermit> two = sem.try_acquire(2);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->count(), 2u);
  EXPECT_EQ(sem.available(), 1u);
  EXPECT_FALSE(sem.try_acquire(2).has_value());
  EXPECT_EQ(sem.available(), 1u) << "a failed try_acquire took permits";
  std::optional<SemaphorePermit> one = sem.try_acquire();
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(sem.available(), 0u);
  EXPECT_FALSE(sem.try_acquire().has_value());
  two.reset();
  one.reset();
  EXPECT_EQ(sem.available(), 3u);
}

TEST(Semaphore, PermitReleaseIsIdempotentAndTheDestructorThenDoesNothing) {
  Semaphore sem(2);
  {
    SemaphorePermit p = *sem.try_acquire(2);
    p.release();
    EXPECT_EQ(sem.available(), 2u);
    p.release();
    EXPECT_EQ(sem.available(), 2u);
    std::optional<SemaphorePermit> other = sem.try_acquire(1);
    ASSERT_TRUE(other.has_value());
  }  // `other` gives its permit back; `p` must not give anything
  EXPECT_EQ(sem.available(), 2u);
}

TEST(Semaphore, AMovedPermitIsReleasedOnceByItsNewOwner) {
  Semaphore sem(4);
  {
    SemaphorePermit first = *sem.try_acquire(3);
    SemaphorePermit moved(std::move(first));
    EXPECT_EQ(first.count(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(moved.count(), 3u);
    first.release();  // holds nothing: no effect
    EXPECT_EQ(sem.available(), 1u);
    SemaphorePermit assigned = *sem.try_acquire(1);
    EXPECT_EQ(sem.available(), 0u);
    assigned = std::move(moved);  // releases the 1 it held, takes the 3
    EXPECT_EQ(assigned.count(), 3u);
    EXPECT_EQ(sem.available(), 1u);
  }
  EXPECT_EQ(sem.available(), 4u);
}

TEST(Semaphore, ReleaseByHandReturnsPermitsTakenByHand) {
  Semaphore sem(2);
  std::optional<SemaphorePermit> p = sem.try_acquire(2);
  ASSERT_TRUE(p.has_value());
  p->release();
  sem.release(0);  // nothing
  EXPECT_EQ(sem.available(), 2u);
}

// ----------------------------------------------------------------------------------------------
// Misuse

TEST(Semaphore, AcquireAboveTheCapacityThrowsUsageError) {
  Semaphore sem(4);
  EXPECT_THROW((void)sem.acquire(5), UsageError);
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([](Semaphore& sem) -> Task<void> {
                 SemaphorePermit p = co_await sem.acquire(5);
               }(sem)),
               UsageError);
  EXPECT_EQ(sem.available(), 4u);
}

TEST(Semaphore, TryAcquireAboveTheCapacityThrowsUsageError) {
  Semaphore sem(4);
  EXPECT_THROW((void)sem.try_acquire(5), UsageError);
  EXPECT_EQ(sem.available(), 4u);
}

TEST(Semaphore, AReleaseAboveTheCapacityThrowsUsageErrorAndChangesNothing) {
  Semaphore sem(3);
  EXPECT_THROW(sem.release(), UsageError);
  EXPECT_EQ(sem.available(), 3u);
  std::optional<SemaphorePermit> p = sem.try_acquire(2);
  EXPECT_THROW(sem.release(3), UsageError);
  EXPECT_EQ(sem.available(), 1u);
  sem.release(2);  // by hand, for the permit's two
  EXPECT_EQ(sem.available(), 3u);
  // The permit's own release now finds the semaphore full: the misuse surfaces there.
  EXPECT_THROW(p->release(), UsageError);
  EXPECT_EQ(p->count(), 2u) << "a failed release let go of the permits";
  EXPECT_EQ(sem.available(), 3u);
  p.reset();  // the destructor reports the dropped permits on stderr; it must not crash
  EXPECT_EQ(sem.available(), 3u);
}

TEST(Semaphore, AReleaseAboveTheCapacityWhileWaitersQueueThrowsUsageError) {
  Semaphore sem(2);
  Endings ends;
  Runtime rt({.workers = 1});
  std::optional<SemaphorePermit> one = sem.try_acquire(1);
  Future<void> f = rt.submit(acquire_once(sem, 2, ends));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 1; }));
  EXPECT_THROW(sem.release(2), UsageError);
  EXPECT_EQ(sem.available(), 1u);
  one.reset();
  f.get();
  EXPECT_EQ(ends.acquired.load(), 1);
  EXPECT_EQ(sem.available(), 2u);
}

TEST(Semaphore, ASemaphoreAboveTheLargestCapacityThrowsUsageError) {
  EXPECT_THROW(Semaphore(Semaphore::kMaxPermits + 1), UsageError);
  Semaphore largest(Semaphore::kMaxPermits);
  EXPECT_EQ(largest.available(), Semaphore::kMaxPermits);
  std::optional<SemaphorePermit> all = largest.try_acquire(Semaphore::kMaxPermits);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(largest.available(), 0u);
}

// ----------------------------------------------------------------------------------------------
// Semaphore(permits, capacity) (SPEC r2)

TEST(Semaphore, ASemaphoreOfZeroPermitsAndACapacityStartsEmptyAndFillsUpToItsCapacity) {
  Semaphore sem(0, 3);
  EXPECT_EQ(sem.available(), 0u);
  EXPECT_EQ(sem.capacity(), 3u);
  EXPECT_FALSE(sem.try_acquire().has_value());
  sem.release(2);
  EXPECT_EQ(sem.available(), 2u);
  sem.release();
  EXPECT_EQ(sem.available(), 3u);
  EXPECT_THROW(sem.release(), UsageError) << "a release above the capacity";
  EXPECT_EQ(sem.available(), 3u);
}

TEST(Semaphore, ASemaphoreOfZeroPermitsWorksAsASignalThatWakesAWaiter) {
  Semaphore signal(0, 64);
  Endings ends;
  Runtime rt({.workers = 1});
  Future<void> f = rt.submit(acquire_once(signal, 1, ends));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 1; }));
  let_them_park();
  EXPECT_EQ(ends.acquired.load(), 0);
  signal.release();  // the waiter takes it; its permit gives it back when it ends
  f.get();
  EXPECT_EQ(ends.acquired.load(), 1);
  EXPECT_EQ(signal.available(), 1u);
}

TEST(Semaphore, WithACapacityAcquireAndTryAcquireAboveItThrowUsageError) {
  Semaphore sem(1, 4);
  EXPECT_THROW((void)sem.acquire(5), UsageError);
  EXPECT_THROW((void)sem.try_acquire(5), UsageError);
  EXPECT_NO_THROW((void)sem.acquire(4)) << "up to the capacity is allowed (it may wait)";
  EXPECT_FALSE(sem.try_acquire(2).has_value());
  EXPECT_EQ(sem.available(), 1u);
}

TEST(Semaphore, WithACapacityAReleaseThatWouldTakeAvailableAboveItThrowsUsageError) {
  Semaphore sem(2, 4);
  EXPECT_THROW(sem.release(3), UsageError);
  EXPECT_EQ(sem.available(), 2u) << "a refused release changed the count";
  sem.release(2);
  EXPECT_EQ(sem.available(), 4u);
}

TEST(Semaphore, MoreInitialPermitsThanTheCapacityOrACapacityAboveTheLargestThrowUsageError) {
  EXPECT_THROW(Semaphore(5, 4), UsageError);
  EXPECT_THROW(Semaphore(0, Semaphore::kMaxPermits + 1), UsageError);
  Semaphore full(4, 4);
  EXPECT_EQ(full.available(), 4u);
}

// n == 0 takes nothing, so it never waits: not even behind queued waiters, which wait for
// permits it does not take.
TEST(Semaphore, ZeroPermitsAreGrantedAtOnceWithAnEmptyPermitEvenWhileOthersQueue) {
  Semaphore sem(1);
  Endings ends;
  Runtime rt({.workers = 1});
  std::optional<SemaphorePermit> held = sem.try_acquire();
  Future<void> waiter = rt.submit(acquire_once(sem, 1, ends));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 1; }));
  std::optional<SemaphorePermit> none = sem.try_acquire(0);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->count(), 0u);
  EXPECT_FALSE(static_cast<bool>(*none));
  rt.block_on([](Semaphore& sem) -> Task<void> {
    SemaphorePermit p = co_await sem.acquire(0);
    EXPECT_EQ(p.count(), 0u);
  }(sem));
  sem.release(0);
  EXPECT_EQ(sem.available(), 0u);
  held.reset();
  waiter.get();
  EXPECT_EQ(sem.available(), 1u);
}

// ----------------------------------------------------------------------------------------------
// FIFO fairness

TEST(Semaphore, QueuedWaitersAreGrantedInArrivalOrder) {
  Semaphore sem(1);
  Runtime rt({.workers = 1});
  const std::vector<int> order = rt.block_on([](Semaphore& sem) -> Task<std::vector<int>> {
    std::vector<int> order;
    std::atomic<int> arrived{0};
    SemaphorePermit held = co_await sem.acquire();
    co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < 6; ++i) {
        (void)tg.spawn([](Semaphore& sem, std::vector<int>& order, std::atomic<int>& arrived,
                    int id) -> Task<void> {
          arrived.fetch_add(1);
          SemaphorePermit p = co_await sem.acquire();
          order.push_back(id);  // one holder at a time: no race
        }(sem, order, arrived, i));
        co_await yield_until([&] { return arrived.load() == i + 1; });
      }
      held.release();
    });
    co_return order;
  }(sem));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(sem.available(), 1u);
}

TEST(Semaphore, AWaiterForManyPermitsIsNotOvertakenByALaterWaiterForFewer) {
  Semaphore sem(3);
  Endings big_ends;
  Endings small_ends;
  Runtime rt({.workers = 1});
  std::optional<SemaphorePermit> a = sem.try_acquire();
  std::optional<SemaphorePermit> b = sem.try_acquire();
  std::optional<SemaphorePermit> c = sem.try_acquire();
  Future<void> big = rt.submit(acquire_once(sem, 3, big_ends));
  ASSERT_TRUE(spin_until([&] { return big_ends.arrived.load() == 1; }));
  Future<void> small = rt.submit(acquire_once(sem, 1, small_ends));
  ASSERT_TRUE(spin_until([&] { return small_ends.arrived.load() == 1; }));
  let_them_park();
  a.reset();
  b.reset();
  let_them_park();
  EXPECT_EQ(sem.available(), 2u);
  EXPECT_EQ(small_ends.acquired.load(), 0) << "a later waiter for 1 overtook a waiter for 3";
  EXPECT_FALSE(small.wait_for(0s));
  c.reset();
  big.get();
  small.get();
  EXPECT_EQ(big_ends.acquired.load(), 1);
  EXPECT_EQ(small_ends.acquired.load(), 1);
  EXPECT_EQ(sem.available(), 3u);
}

TEST(Semaphore, TryAcquireFailsWhileAnAcquireIsQueuedEvenWithEnoughPermitsFree) {
  Semaphore sem(2);
  Endings ends;
  Runtime rt({.workers = 1});
  std::optional<SemaphorePermit> a = sem.try_acquire();
  std::optional<SemaphorePermit> b = sem.try_acquire();
  Future<void> waiter = rt.submit(acquire_once(sem, 2, ends));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 1; }));
  let_them_park();
  a.reset();
  EXPECT_EQ(sem.available(), 1u);
  EXPECT_FALSE(sem.try_acquire().has_value()) << "try_acquire overtook a queued waiter";
  EXPECT_EQ(sem.available(), 1u);
  b.reset();
  waiter.get();
  EXPECT_EQ(sem.available(), 2u);
  EXPECT_TRUE(sem.try_acquire(2).has_value()) << "the queue is empty again";
}

TEST(Semaphore, AReleaseThatCoversSeveralWaitersWakesAllOfThemInOneGo) {
  Semaphore sem(3);
  Endings ends;
  Runtime rt({.workers = 2});
  std::optional<SemaphorePermit> all = sem.try_acquire(3);
  std::vector<Future<void>> fs;
  for (std::size_t n : {1u, 2u}) fs.push_back(rt.submit(acquire_once(sem, n, ends)));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 2; }));
  let_them_park();
  all.reset();
  for (auto& f : fs) f.get();
  EXPECT_EQ(ends.acquired.load(), 2);
  EXPECT_EQ(sem.available(), 3u);
}

// ----------------------------------------------------------------------------------------------
// Cancellation

// Level-triggered (SPEC §3), as Event::wait: the acquire is a suspension point even when it
// would not have to wait.
TEST(Semaphore, AnAcquireInAnAlreadyCancelledTaskThrowsCancelledEvenWithPermitsFree) {
  Semaphore sem(2);
  std::atomic<bool> started{false};
  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> acquired{false};
  Runtime rt({.workers = 2});
  Future<void> f = rt.submit([](Semaphore& sem, std::atomic<bool>& started,
                                std::atomic<bool>& cancel_requested,
                                std::atomic<bool>& acquired) -> Task<void> {
    started.store(true);
    spin_until([&] { return cancel_requested.load(); });
    SemaphorePermit p = co_await sem.acquire();
    acquired.store(true);
  }(sem, started, cancel_requested, acquired));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(acquired.load()) << "a cancelled task acquired a permit";
  EXPECT_EQ(sem.available(), 2u);
}

TEST(Semaphore, AParkedAcquireIsWokenByItsCancellationAndLeavesTheQueue) {
  Semaphore sem(1);
  Endings ends;
  Runtime rt({.workers = 2});
  std::optional<SemaphorePermit> held = sem.try_acquire();
  Future<void> f = rt.submit(acquire_once(sem, 1, ends));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 1; }));
  let_them_park();
  f.cancel();
  ASSERT_TRUE(f.wait_for(60s)) << "the cancellation did not wake the waiter";
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(ends.cancelled.load(), 1);
  held.reset();
  EXPECT_EQ(sem.available(), 1u) << "the release went to the cancelled waiter";
  EXPECT_TRUE(sem.try_acquire().has_value()) << "the cancelled waiter is still queued";
}

TEST(Semaphore, AnAcquireThatTimesOutLeavesTheQueueWithoutLosingAPermit) {
  Semaphore sem(1);
  Endings ends;
  Runtime rt({.workers = 2});
  std::optional<SemaphorePermit> held = sem.try_acquire();
  Future<void> f = rt.submit(weft::timeout(20ms, acquire_once(sem, 1, ends)));
  EXPECT_THROW(f.get(), weft::TimeoutError);
  // On a loaded machine the deadline may pass before the task starts: it then never runs.
  EXPECT_EQ(ends.cancelled.load(), ends.arrived.load())
      << "the waiter did not see Cancelled inside the timeout";
  held.reset();
  EXPECT_EQ(sem.available(), 1u) << "the release went to the timed-out waiter";
  EXPECT_TRUE(sem.try_acquire().has_value()) << "the timed-out waiter is still queued";
}

TEST(Semaphore, AnAcquireGrantedBeforeItsDeadlineKeepsItsPermits) {
  Semaphore sem(1);
  Endings ends;
  Runtime rt({.workers = 2});
  std::optional<SemaphorePermit> held = sem.try_acquire();
  Future<void> f = rt.submit(weft::timeout(1h, acquire_once(sem, 1, ends)));
  ASSERT_TRUE(spin_until([&] { return ends.arrived.load() == 1; }));
  held.reset();
  f.get();
  EXPECT_EQ(ends.acquired.load(), 1);
  EXPECT_EQ(sem.available(), 1u);
}

TEST(Semaphore, ACancelledHeadWaiterLetsTheSmallerWaitersBehindItThrough) {
  Semaphore sem(2);
  Endings big_ends;
  Endings small_ends;
  Runtime rt({.workers = 1});
  std::optional<SemaphorePermit> a = sem.try_acquire();
  std::optional<SemaphorePermit> b = sem.try_acquire();
  Future<void> big = rt.submit(acquire_once(sem, 2, big_ends));
  ASSERT_TRUE(spin_until([&] { return big_ends.arrived.load() == 1; }));
  Future<void> small = rt.submit(acquire_once(sem, 1, small_ends));
  ASSERT_TRUE(spin_until([&] { return small_ends.arrived.load() == 1; }));
  let_them_park();
  a.reset();  // one free permit: enough for the small waiter, held back behind the big one
  let_them_park();
  EXPECT_EQ(small_ends.acquired.load(), 0);
  big.cancel();
  EXPECT_THROW(big.get(), Cancelled);
  ASSERT_TRUE(small.wait_for(60s)) << "the waiter behind a cancelled head stayed parked";
  small.get();
  EXPECT_EQ(small_ends.acquired.load(), 1);
  EXPECT_EQ(sem.available(), 1u);  // `b` still holds one
  b.reset();
  EXPECT_EQ(sem.available(), 2u);
}

TEST(Semaphore, WaitersInATaskGroupAreWokenWithCancelledWhenASiblingFails) {
  Semaphore sem(1);
  Endings ends;
  Runtime rt({.workers = 2});
  std::optional<SemaphorePermit> held = sem.try_acquire();
  try {
    rt.block_on([](Semaphore& sem, Endings& ends) -> Task<void> {
      co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
        for (int i = 0; i < 3; ++i) (void)tg.spawn(acquire_once(sem, 1, ends));
        (void)tg.spawn([](Endings& ends) -> Task<void> {
          co_await yield_until([&] { return ends.arrived.load() == 3; });
          throw TaskError(7);
        }(ends));
        co_return;
      });
    }(sem, ends));
    FAIL() << "no exception";
  } catch (const weft::ExceptionGroup& group) {
    EXPECT_EQ(group.exceptions().size(), 1u);
    EXPECT_TRUE(group.contains<TaskError>());
  }
  EXPECT_EQ(ends.cancelled.load(), 3);
  held.reset();
  EXPECT_EQ(sem.available(), 1u);
}

// A release on one thread races the cancellation of the waiters on another: each waiter ends
// exactly once, holding a permit or with Cancelled, and no permit is lost or duplicated
// (a waiter granted at the instant it was cancelled hands its permit on).
TEST(Semaphore, ReleaseRacingCancellationEndsEveryWaiterOnceAndLosesNoPermit) {
  const int rounds = kSanitized ? 200 : 1000;
  constexpr int kWaiters = 24;
  Runtime rt({.workers = 2});
  int total_acquired = 0;
  int total_cancelled = 0;
  for (int round = 0; round < rounds; ++round) {
    Semaphore sem(2);
    Endings ends;
    std::optional<SemaphorePermit> held = sem.try_acquire(2);
    std::vector<Future<void>> fs;
    for (int i = 0; i < kWaiters; ++i)
      fs.push_back(rt.submit(acquire_once_in_a_heap_frame(sem, ends, static_cast<unsigned>(i))));
    spin_until([&] { return ends.arrived.load() == kWaiters; });
    const int offset = round % 33 - 16;
    std::atomic<bool> releaser_ready{false};
    std::atomic<bool> go{false};
    std::thread releaser([&] {
      releaser_ready.store(true);
      while (!go.load()) {
      }
      for (int spin = 0; spin < offset * 40; ++spin) spin_pause();
      held.reset();
    });
    while (!releaser_ready.load()) std::this_thread::yield();
    go.store(true);
    for (int spin = 0; spin < -offset * 40; ++spin) spin_pause();
    // From the middle of the queue outwards, while grants walk it from the front.
    for (int i = 0; i < kWaiters; ++i) fs[(i * 7) % kWaiters].cancel();
    int got_acquired = 0;
    int got_cancelled = 0;
    for (auto& f : fs) {
      try {
        f.get();
        ++got_acquired;
      } catch (const Cancelled&) {
        ++got_cancelled;
      }
    }
    releaser.join();
    EXPECT_EQ(ends.acquired.load() + ends.cancelled.load(), kWaiters) << "round " << round;
    EXPECT_EQ(got_acquired, ends.acquired.load()) << "round " << round;
    EXPECT_EQ(sem.available(), 2u) << "round " << round;
    total_acquired += got_acquired;
    total_cancelled += got_cancelled;
    if (HasFailure()) break;
  }
  RecordProperty("acquired", total_acquired);
  RecordProperty("cancelled", total_cancelled);
}

// ----------------------------------------------------------------------------------------------
// Across threads, and outside weft tasks

TEST(Semaphore, ASemaphoreOfOneGivesMutualExclusionAcrossWorkers) {
  constexpr int kTasks = 200;
  constexpr int kIncrements = 50;
  Semaphore sem(1);
  long counter = 0;  // plain: the semaphore is the only thing ordering the increments
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  Runtime rt({.workers = 2});
  rt.block_on([](Semaphore& sem, long& counter, std::atomic<int>& inside,
                 std::atomic<bool>& overlapped) -> Task<void> {
    std::vector<Task<void>> tasks;
    for (int t = 0; t < kTasks; ++t)
      tasks.push_back([](Semaphore& sem, long& counter, std::atomic<int>& inside,
                         std::atomic<bool>& overlapped) -> Task<void> {
        for (int i = 0; i < kIncrements; ++i) {
          SemaphorePermit p = co_await sem.acquire();
          if (inside.fetch_add(1) != 0) overlapped.store(true);
          const long seen = counter;
          if (i % 8 == 0) co_await weft::this_task::yield();  // hold it across a suspension
          counter = seen + 1;
          inside.fetch_sub(1);
        }
      }(sem, counter, inside, overlapped));
    co_await weft::safe_gather(std::move(tasks));
  }(sem, counter, inside, overlapped));
  EXPECT_FALSE(overlapped.load());
  EXPECT_EQ(counter, long{kTasks} * kIncrements);
  EXPECT_EQ(sem.available(), 1u);
}

// A coroutine that is not a weft task has no scope to be cancelled through and no runtime: it
// parks, and the release resumes it on the releasing thread.
TEST(Semaphore, AcquireWorksInACoroutineThatIsNotAWeftTask) {
  Semaphore sem(1);
  std::optional<SemaphorePermit> held = sem.try_acquire();
  std::atomic<int> stage{0};
  [](Semaphore& sem, std::atomic<int>& stage) -> Eager {
    stage.store(1);
    SemaphorePermit p = co_await sem.acquire();
    stage.store(2);
  }(sem, stage);
  EXPECT_EQ(stage.load(), 1) << "the acquire did not wait";
  held.reset();
  EXPECT_EQ(stage.load(), 2) << "the release did not resume the waiter";
  EXPECT_EQ(sem.available(), 1u);
}

}  // namespace

// Semaphore under load: 10,000 tasks contend for Semaphore(4), each for 1, 2 or 3 permits,
// holding them across a few suspensions, while cancellations arrive at random moments from
// another thread (CancellationSource + with_cancellation) or from other tasks
// (TaskGroup::cancel). Checked: never more than 4 permits held at once; every task either
// acquired (and, by RAII, released) or saw Cancelled while waiting; available() is back to 4.
//
// A third mode gives every task a random timeout (0 to 2 ms; a zero budget never starts the
// task): deadlines fire on the timer thread while tasks queue or hold permits.
#include <weft/semaphore.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::Rng;

using weft::CancellationSource;
using weft::Cancelled;
using weft::Runtime;
using weft::Semaphore;
using weft::SemaphorePermit;
using weft::Task;

constexpr std::size_t kCapacity = 4;
constexpr int kTasks = 10'000;
constexpr int kGroups = 100;  // kTaskGroupCancelFromATask: kTasks spread over this many groups

enum class CancelMode {
  kCancellationSourceFromAThread,  // a foreign thread cancels random tasks' sources
  kTaskGroupCancelFromATask,       // in some groups a sibling task cancels the whole group
  kRandomTimeouts,                 // each task under weft::timeout with a random budget
};

std::string mode_name(CancelMode mode) {
  switch (mode) {
    case CancelMode::kCancellationSourceFromAThread: return "CancellationSourceFromAThread";
    case CancelMode::kTaskGroupCancelFromATask: return "TaskGroupCancelFromATask";
    case CancelMode::kRandomTimeouts: return "RandomTimeouts";
  }
  return "unknown";
}

// For gtest's messages.
void PrintTo(CancelMode mode, std::ostream* os) { *os << mode_name(mode); }

// What the tasks saw, and the holders' invariant.
struct Census {
  std::atomic<int> held{0};  // permits held right now
  std::atomic<int> most_held{0};
  std::atomic<int> acquired{0};           // acquire returned (the permit was released by RAII)
  std::atomic<int> cancelled_waiting{0};  // acquire threw Cancelled
  std::atomic<int> started{0};
  // Pacing for a canceller thread: the k-th holder holds its permits until the thread has
  // issued k * cancels_planned / kTasks cancellations, so that they land all along the run
  // however the OS schedules that thread (else a 20 ms run may end before it wakes).
  long cancels_planned = 0;
  std::atomic<long> cancels_issued{0};

  void note_held(int now) {
    int seen = most_held.load(std::memory_order_relaxed);
    while (now > seen && !most_held.compare_exchange_weak(seen, now)) {
    }
  }
};

// Acquires n permits, holds them across `hold_yields` suspensions (where a cancellation may
// strike: the permit is then released by its destructor) and the canceller's pacing, and
// releases them. `group_acquired` counts the acquisitions of its TaskGroup, if any.
Task<void> contender(Semaphore& sem, std::size_t n, int hold_yields, Census& census,
                     std::atomic<int>* group_acquired) {
  census.started.fetch_add(1, std::memory_order_relaxed);
  SemaphorePermit permit;
  try {
    permit = co_await sem.acquire(n);
  } catch (const Cancelled&) {
    census.cancelled_waiting.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  const long order = census.acquired.fetch_add(1, std::memory_order_relaxed);
  if (group_acquired != nullptr) group_acquired->fetch_add(1, std::memory_order_relaxed);
  const int count = static_cast<int>(n);
  census.note_held(census.held.fetch_add(count) + count);
  // Destroyed before `permit`: the count drops before the permits are free again.
  struct Leave {
    Census& census;
    int count;
    ~Leave() { census.held.fetch_sub(count); }
  } leave{census, count};
  for (int i = 0; i < hold_yields; ++i) co_await weft::this_task::yield();
  const long due = order * census.cancels_planned / kTasks;
  weft_test::HangGuard guard;
  while (census.cancels_issued.load(std::memory_order_relaxed) < due && !guard.expired())
    co_await weft::this_task::yield();
}

// The task as the mode runs it.
Task<void> wrap_for_mode(CancelMode mode, Task<void> task, CancellationSource* source,
                         Rng& rng) {
  switch (mode) {
    case CancelMode::kCancellationSourceFromAThread:
      return weft::with_cancellation(source->token(), std::move(task));
    case CancelMode::kTaskGroupCancelFromATask:
      return task;
    case CancelMode::kRandomTimeouts: {
      const auto budget = std::chrono::microseconds(rng.below(10) == 0 ? 0 : rng.below(2000));
      return weft::timeout(budget, std::move(task));
    }
  }
  return task;
}

// True when `e` is how a cancelled task of this mode ends.
bool ends_a_cancelled_task(CancelMode mode, const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Cancelled&) {
    return mode != CancelMode::kRandomTimeouts;
  } catch (const weft::TimeoutError&) {
    return mode == CancelMode::kRandomTimeouts;
  } catch (...) {
    return false;
  }
}

Task<void> make_contender(CancelMode mode, Semaphore& sem, Rng& rng, Census& census,
                          CancellationSource* source, std::atomic<int>* group_acquired) {
  const std::size_t n = 1 + rng.below(3);
  const int hold_yields = static_cast<int>(rng.below(4));
  return wrap_for_mode(mode, contender(sem, n, hold_yields, census, group_acquired), source,
                       rng);
}

// Every task wrapped in its own CancellationSource; a foreign thread cancels random ones at
// random moments while they run (kCancelsPlanned of them, paced as Census explains: most land
// on tasks queued in the semaphore, some on holders, a few on tasks not started yet).
// Returns how many tasks ended with a cancellation.
constexpr long kCancelsPlanned = kTasks / 3;

int run_with_sources_cancelled_from_a_thread(Runtime& rt, Semaphore& sem, Census& census,
                                             std::uint64_t seed,
                                             CancelMode mode = CancelMode::kCancellationSourceFromAThread) {
  const bool timeouts = mode == CancelMode::kRandomTimeouts;
  std::deque<CancellationSource> sources(kTasks);
  Rng rng{seed};
  census.cancels_planned = timeouts ? 0 : kCancelsPlanned;
  std::vector<Task<void>> tasks;
  tasks.reserve(kTasks);
  for (int i = 0; i < kTasks; ++i)
    tasks.push_back(
        make_contender(mode, sem, rng, census, &sources[static_cast<std::size_t>(i)], nullptr));
  std::thread canceller([&, seed] {
    if (timeouts) return;  // the deadlines do the cancelling
    Rng pick{seed * 31 + 7};
    // Random tasks (some twice), with short random pauses in between.
    for (long k = 0; k < kCancelsPlanned; ++k) {
      sources[pick.below(kTasks)].cancel();
      census.cancels_issued.fetch_add(1, std::memory_order_relaxed);
      // A busy wait the compiler keeps (the fence is a compiler barrier).
      for (std::uint64_t spin = pick.below(200); spin > 0; --spin)
        std::atomic_signal_fence(std::memory_order_seq_cst);
      if (pick.below(64) == 0) std::this_thread::yield();
    }
  });
  auto outcomes = rt.block_on([](std::vector<Task<void>> tasks)
                                  -> Task<std::vector<weft::Outcome<void>>> {
    co_return co_await weft::safe_gather(weft::return_exceptions, std::move(tasks));
  }(std::move(tasks)));
  canceller.join();
  int cancelled = 0;
  for (auto& outcome : outcomes) {
    if (!outcome.has_exception()) continue;
    EXPECT_TRUE(ends_a_cancelled_task(mode, outcome.exception())) << "a task failed otherwise";
    ++cancelled;
  }
  return cancelled;
}

// kGroups task groups of contenders; in about half of them a sibling task cancels the group
// once a random number of the group's contenders (0 to all) have acquired their permits.
void run_with_groups_cancelled_from_tasks(Runtime& rt, Semaphore& sem, Census& census,
                                          std::uint64_t seed) {
  const CancelMode mode = CancelMode::kTaskGroupCancelFromATask;
  auto group = [](CancelMode mode, Semaphore& sem, Census& census,
                  std::uint64_t seed) -> Task<void> {
    constexpr int kPerGroup = kTasks / kGroups;
    Rng rng{seed};
    std::atomic<int> group_acquired{0};
    co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < kPerGroup; ++i)
        (void)tg.spawn(make_contender(mode, sem, rng, census, nullptr, &group_acquired));
      if (rng.below(2) == 0)
        (void)tg.spawn([](weft::TaskGroup& tg, std::atomic<int>& group_acquired,
                          int target) -> Task<void> {
          weft_test::HangGuard guard;
          while (group_acquired.load(std::memory_order_relaxed) < target && !guard.expired())
            co_await weft::this_task::yield();
          tg.cancel();
        }(tg, group_acquired, static_cast<int>(rng.below(kPerGroup + 1))));
      co_return;
    });
  };
  auto all = [&]() -> Task<void> {
    std::vector<Task<void>> groups;
    for (int g = 0; g < kGroups; ++g)
      groups.push_back(group(mode, sem, census, seed * 1000 + static_cast<std::uint64_t>(g)));
    // A cancelled group ends quietly (its body returns void): nothing here may fail.
    co_await weft::safe_gather(std::move(groups));
  };
  rt.block_on(all());
}

class SemaphoreStress : public ::testing::TestWithParam<CancelMode> {};

TEST_P(SemaphoreStress, TenThousandTasksWithRandomCancellationsNeverExceedTheCapacityNorLoseAPermit) {
  const int rounds = weft_test::kSanitized ? 1 : 3;
  Runtime rt({.workers = 4});
  for (int round = 0; round < rounds; ++round) {
    Semaphore sem(kCapacity);
    Census census;
    const auto seed = static_cast<std::uint64_t>(round + 1) * 0x9e3779b97f4a7c15ULL;
    int cancelled_outcomes = -1;
    switch (GetParam()) {
      case CancelMode::kCancellationSourceFromAThread:
        cancelled_outcomes = run_with_sources_cancelled_from_a_thread(rt, sem, census, seed);
        break;
      case CancelMode::kTaskGroupCancelFromATask:
        run_with_groups_cancelled_from_tasks(rt, sem, census, seed);
        break;
      case CancelMode::kRandomTimeouts:
        cancelled_outcomes = run_with_sources_cancelled_from_a_thread(
            rt, sem, census, seed, CancelMode::kRandomTimeouts);
        break;
    }
    EXPECT_LE(census.most_held.load(), static_cast<int>(kCapacity))
        << "more permits held at once than the semaphore has; round " << round;
    EXPECT_EQ(census.held.load(), 0) << "round " << round;
    EXPECT_EQ(sem.available(), kCapacity) << "a permit was lost or leaked; round " << round;
    // A task cancelled before it started never ran its body: it neither acquired nor waited.
    EXPECT_EQ(census.acquired.load() + census.cancelled_waiting.load(), census.started.load())
        << "round " << round;
    if (cancelled_outcomes >= 0) {
      EXPECT_GE(cancelled_outcomes, census.cancelled_waiting.load()) << "round " << round;
    }
    RecordProperty("acquired_round_" + std::to_string(round), census.acquired.load());
    RecordProperty("cancelled_waiting_round_" + std::to_string(round),
                   census.cancelled_waiting.load());
    RecordProperty("not_started_round_" + std::to_string(round),
                   kTasks - census.started.load());
    if (HasFailure()) break;
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SemaphoreStress,
                         ::testing::Values(CancelMode::kCancellationSourceFromAThread,
                                           CancelMode::kTaskGroupCancelFromATask,
                                           CancelMode::kRandomTimeouts),
                         [](const ::testing::TestParamInfo<CancelMode>& info) {
                           return mode_name(info.param);
                         });

}  // namespace

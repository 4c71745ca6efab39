// Schedule perturbation (issue 10, lane 2): weft's own tests on the perturbation build
// (weft/detail/perturb.hpp, weft/detail/atomic_shim.hpp), where every protocol atomic, every
// suspension point and every choice of steal victim draws from a seeded per-thread generator
// and may yield the CPU or spin, so that interleavings that are rare in ordinary runs happen.
//
//   - the chaos workload (chaos_workload.hpp, with fault injection too) keeps every invariant;
//   - fork-join trees of gathers and task groups, with and without failures, count every task
//     once, return the right sum or the thrown failure, and leave nothing running;
//   - a seed replays: every worker draws the same decisions under the same seed, the ones the
//     seed predicts, and other ones under another seed.
//
// WEFT_PERTURB_SEED=S starts the seeds at S (every failure names the seed to replay).
#include <weft/detail/perturb.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "chaos_workload.hpp"
#include "task_accounting.hpp"
#include "test_support.hpp"

namespace {

namespace perturb = weft::detail::perturb;
using weft::Runtime;
using weft::Task;
using weft::TaskGroup;
using weft_test::Life;
using weft_test::TaskCounts;
using weft_test::TaskError;

// How often a point acts: often enough to reorder the protocols' steps, rarely enough that a
// run still finishes quickly.
constexpr perturb::Config kPerturbation{.yield_ppm = 20'000, .spin_ppm = 100'000, .max_spin = 200};

std::uint64_t first_seed() {
  const char* text = std::getenv("WEFT_PERTURB_SEED");
  return text != nullptr ? std::strtoull(text, nullptr, 10) : 1;
}

// Runs `round(rt, seed)` for `seeds` seeds from first_seed() on, each under perturbation
// `config` with that seed, on one two-worker runtime; stops at the first failure, which names
// its seed.
template <class F>
void for_each_seed(int seeds, perturb::Config config, F round) {
  Runtime rt({.workers = 2});
  for (std::uint64_t seed = first_seed(); seed < first_seed() + seeds; ++seed) {
    SCOPED_TRACE("perturbation seed " + std::to_string(seed) + " (WEFT_PERTURB_SEED replays it)");
    config.seed = seed;
    perturb::configure(config);
    round(rt, seed);
    perturb::disable();
    if (::testing::Test::HasFailure()) break;
  }
}

// A leaf is worth 1; leaf number `fail_at` (counted left to right) throws TaskError instead.
// Levels alternate between the fork shapes: a variadic gather, a vector gather, and a task
// group whose children are joined one by one, joined by the group, or dropped.
Task<long> tree(TaskCounts& tally, int depth, int first_leaf, int fail_at) {
  Life life(tally);
  if (depth == 0) {
    co_await weft::this_task::checkpoint();
    if (first_leaf == fail_at) throw TaskError(first_leaf);
    co_return 1;
  }
  const int leaves_below = 1 << (depth - 1);  // a binary tree, except the vector level
  switch (depth % 3) {
    case 0: {
      auto [a, b] = co_await weft::safe_gather(tree(tally, depth - 1, first_leaf, fail_at),
                                               tree(tally, depth - 1, first_leaf + leaves_below,
                                                    fail_at));
      co_return a + b;
    }
    case 1: {
      std::vector<Task<long>> two;
      two.push_back(tree(tally, depth - 1, first_leaf, fail_at));
      two.push_back(tree(tally, depth - 1, first_leaf + leaves_below, fail_at));
      const std::vector<long> sums = co_await weft::safe_gather(std::move(two));
      co_return sums[0] + sums[1];
    }
    default: {
      std::atomic<long> dropped{0};
      const long joined = co_await weft::task_group([&](TaskGroup& tg) -> Task<long> {
        weft::JoinHandle<long> left = tg.spawn(tree(tally, depth - 1, first_leaf, fail_at));
        // The right child's handle is dropped: the group still awaits it.
        (void)tg.spawn([](Task<long> t, std::atomic<long>& out) -> Task<void> {
          out.store(co_await std::move(t));
        }(tree(tally, depth - 1, first_leaf + leaves_below, fail_at), dropped));
        co_return co_await left.join();
      });
      co_return joined + dropped.load();
    }
  }
}

constexpr int kDepth = 9;  // 512 leaves
constexpr int kLeaves = 1 << kDepth;

TEST(Perturbation, TheBuildPerturbs) {
  ASSERT_TRUE(perturb::kEnabled) << "perturbation_test must link the perturbation build of weft";
}

constexpr int kTreeSeeds = weft_test::kSanitized ? 20 : 50;

TEST(Perturbation, GathersAndGroupsUnderPerturbedSchedulesCountEveryTaskOnceAndReturnTheSum) {
  for_each_seed(kTreeSeeds, kPerturbation, [](Runtime& rt, std::uint64_t) {
    TaskCounts tally;
    EXPECT_EQ(rt.block_on(tree(tally, kDepth, 0, -1)), kLeaves);
    EXPECT_TRUE(tally.balanced());
    EXPECT_GT(perturb::counts().points, 0u);
  });
}

TEST(Perturbation, AFailureUnderPerturbedSchedulesSurfacesAndLeavesNothingRunning) {
  for_each_seed(kTreeSeeds, kPerturbation, [](Runtime& rt, std::uint64_t seed) {
    TaskCounts tally;
    const int fail_at = static_cast<int>(seed % kLeaves);
    bool surfaced = false;
    try {
      (void)rt.block_on(tree(tally, kDepth, 0, fail_at));
    } catch (const TaskError& e) {  // from a gather: as itself
      surfaced = e.id == fail_at;
    } catch (const weft::ExceptionGroup& eg) {  // from a group: in its ExceptionGroup
      surfaced = eg.contains<TaskError>();
    }
    EXPECT_TRUE(surfaced) << "the failure of leaf " << fail_at << " was lost";
    // block_on returned: every task the tree started has ended.
    EXPECT_TRUE(tally.balanced());
  });
}

TEST(Perturbation, TheChaosWorkloadUnderPerturbedSchedulesKeepsEveryInvariant) {
  weft_chaos::Counts counts;
  const std::uint64_t seed = first_seed();
  const int rounds = weft_test::kSanitized ? 300 : 1500;
  const weft_chaos::Totals t = weft_chaos::run_chaos(counts, seed, rounds, 0.0, kPerturbation);
  EXPECT_TRUE(counts.tasks.balanced());
  EXPECT_EQ(counts.violations.load(), 0u)
      << "replay the failing round's seed (named above) with WEFT_PERTURB_SEED";
  // The perturbation must have acted, or the test proves nothing.
  EXPECT_GT(t.perturbed.yielded, 0u);
  EXPECT_GT(t.perturbed.spun, 0u);
  EXPECT_GT(t.perturbed.steal_orders, 0u);
  std::printf("perturbation: %llu rounds from seed %llu, %llu tasks, %llu points: %llu yields, "
              "%llu spins, %llu steal orders; %llu faults injected; %llu violations\n",
              static_cast<unsigned long long>(t.rounds), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(counts.tasks.started.load()),
              static_cast<unsigned long long>(t.perturbed.points),
              static_cast<unsigned long long>(t.perturbed.yielded),
              static_cast<unsigned long long>(t.perturbed.spun),
              static_cast<unsigned long long>(t.perturbed.steal_orders),
              static_cast<unsigned long long>(t.injected.cancelled + t.injected.thrown),
              static_cast<unsigned long long>(counts.violations.load()));
}

// A child that finishes a few scheduling rounds later.
Task<void> finishes_soon(int rounds) {
  for (int i = 0; i < rounds; ++i) co_await weft::this_task::yield();
}

// Joins a child of `tg`. Its frame is large, so it comes from the heap and goes back there when
// the task ends (the frame caches keep only small frames): a touch of it after that is a
// use-after-free that ASan and TSan see.
Task<void> joins_a_child(TaskGroup& tg, int child_rounds) {
  std::array<volatile char, 4096> ballast{};
  ballast[0] = 1;
  weft::JoinHandle<void> child = tg.spawn(finishes_soon(child_rounds));
  co_await child.join();
  ballast[1] = ballast[0];
}

// Issue 10, found by the fuzzer (tests/fuzz): JoinHandle::join() set the child's kJoinWaiting
// bit after its waiter had become Waiting. A cancellation in between resumed the joiner, which
// ended and freed its frame, the waiter with it; the child, finishing later, saw the bit and
// woke the freed waiter.
TEST(Perturbation, AJoinCancelledWhileItRegistersLeavesNothingBehindThatTheChildWakes) {
  perturb::Config wide = kPerturbation;
  wide.yield_ppm = 200'000;  // wide windows between the steps of the hand-off
  for_each_seed(weft_test::kSanitized ? 300 : 2000, wide, [](Runtime& rt, std::uint64_t seed) {
    const int round = static_cast<int>(seed % 12);
    rt.block_on(weft::task_group([&](TaskGroup& tg) -> Task<void> {
      weft::JoinHandle<void> joiner = tg.spawn(joins_a_child(tg, 1 + round % 4));
      for (int i = 0; i < round % 3; ++i) co_await weft::this_task::yield();
      joiner.cancel();
      co_return;
    }));
  });
}

// The draws each worker made under `seed` while a perturbed fork-join tree ran (the runtime is
// destroyed, so its workers are joined, before they are read).
std::vector<std::vector<std::uint64_t>> worker_draws(std::uint64_t seed) {
  constexpr unsigned kWorkers = 2;
  std::vector<std::vector<std::uint64_t>> draws;
  {
    Runtime rt({.workers = kWorkers});
    TaskCounts tally;
    perturb::Config config = kPerturbation;
    config.seed = seed;
    perturb::configure(config);
    EXPECT_EQ(rt.block_on(tree(tally, kDepth, 0, -1)), kLeaves);
  }
  perturb::disable();
  for (unsigned w = 0; w < kWorkers; ++w) draws.push_back(perturb::recorded(w));
  return draws;
}

TEST(Perturbation, ASeedReplaysTheSameDecisionsOnEveryWorker) {
  const std::uint64_t seed = first_seed() + 41;
  const auto first = worker_draws(seed);
  const auto again = worker_draws(seed);
  const auto other = worker_draws(seed + 1);
  for (unsigned w = 0; w < first.size(); ++w) {
    SCOPED_TRACE("worker " + std::to_string(w));
    // Each worker reached points (a tree of 1000 tasks on two workers: both run some).
    ASSERT_FALSE(first[w].empty());
    ASSERT_FALSE(again[w].empty());
    // Its decisions are the ones the seed predicts for its slot, in the same order in both
    // runs, whatever the interleaving was.
    const std::size_t n = std::min(first[w].size(), again[w].size());
    EXPECT_EQ(first[w], perturb::preview(seed, w, first[w].size()));
    EXPECT_EQ(std::vector(first[w].begin(), first[w].begin() + static_cast<long>(n)),
              std::vector(again[w].begin(), again[w].begin() + static_cast<long>(n)));
    // Another seed, other decisions; another worker, other decisions.
    EXPECT_NE(other[w].front(), first[w].front());
  }
  EXPECT_NE(first[0].front(), first[1].front());
}

}  // namespace

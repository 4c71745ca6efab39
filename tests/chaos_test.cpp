// Chaos (issue 10, lanes 1 and 6): the chaos workload (chaos_workload.hpp: random trees of task
// groups over every primitive, its invariants checked after every round) run with weft's fault
// injection on (weft/detail/fault_injection.hpp: tasks get cancelled, throw or lose the CPU at
// weft's suspension points).
//
// Links the fault injection build of weft. With WEFT_SOAK_SECONDS=N in the environment the
// test runs rounds for N seconds instead of a fixed count and prints its counts (tools/soak).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "chaos_workload.hpp"

namespace {

using namespace weft_chaos;

TEST(Chaos, MixedWorkloadsUnderInjectedFaultsKeepEveryInvariant) {
  ASSERT_TRUE(fault::kEnabled) << "chaos_test must link the fault injection build of weft";
  const char* soak = std::getenv("WEFT_SOAK_SECONDS");
  const double seconds = soak != nullptr ? std::atof(soak) : 0.0;
  const char* seed_text = std::getenv("WEFT_CHAOS_SEED");
  const std::uint64_t first_seed = seed_text != nullptr ? std::strtoull(seed_text, nullptr, 10) : 1;
  Counts counts;
  const Totals t = run_chaos(counts, first_seed, weft_test::kSanitized ? 300 : 2000, seconds);
  EXPECT_TRUE(counts.tasks.balanced());
  EXPECT_EQ(counts.violations.load(), 0u);
  // The injection must have acted, or the test proves nothing.
  EXPECT_GT(t.injected.cancelled, 0u);
  EXPECT_GT(t.injected.thrown, 0u);
  EXPECT_GT(counts.failures_checked.load(), 0u);
  std::printf(
      "chaos: %llu rounds from seed %llu, %llu tasks, %llu groups, %llu workload failures "
      "(%llu found in their group's ExceptionGroup), %llu fault points: %llu cancellations, "
      "%llu throws, %llu yields injected; %llu invariant checks, %llu violations\n",
      static_cast<unsigned long long>(t.rounds), static_cast<unsigned long long>(first_seed),
      static_cast<unsigned long long>(counts.tasks.started.load()),
      static_cast<unsigned long long>(counts.groups.load()),
      static_cast<unsigned long long>(counts.failures_thrown.load()),
      static_cast<unsigned long long>(counts.failures_checked.load()),
      static_cast<unsigned long long>(t.injected.points),
      static_cast<unsigned long long>(t.injected.cancelled),
      static_cast<unsigned long long>(t.injected.thrown),
      static_cast<unsigned long long>(t.injected.yielded),
      static_cast<unsigned long long>(counts.invariant_checks.load()),
      static_cast<unsigned long long>(counts.violations.load()));
}

}  // namespace

// The chaos workload (issue 10, lanes 1, 2 and 6), shared by tests/chaos_test.cpp (fault
// injection) and tests/perturbation_test.cpp (fault injection and schedule perturbation):
// seeded random trees of task groups whose leaves use every primitive (checkpoints, yields, a
// semaphore, sleeps, timeouts, gathers, wait_any) and fail at random. After every round:
//   - every group returned (a hang guard: the round's Future must end within a minute);
//   - every task that started ended, exactly once (a counter in each frame);
//   - no semaphore permit was lost;
//   - nothing ran after its group had returned (each task checks its owner's flag);
//   - every real failure of a child is in its group's ExceptionGroup (never lost, also when the
//     group was cancelled);
//   - the round ended with a value, an ExceptionGroup or Cancelled, and nothing else;
// and ASan/LSan report no leak in the sanitizer builds.
//
// Include it from a test that links a fault injection build of weft.
#pragma once

#include <weft/detail/fault_injection.hpp>
#include <weft/detail/perturb.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "task_accounting.hpp"
#include "test_support.hpp"

// Internal linkage (each test file gets its own copy): g++ warns about coroutine frames with
// lambda-typed fields in a header otherwise (-Wsubobject-linkage).
namespace weft_chaos {
namespace {

using namespace std::chrono_literals;
namespace fault = weft::detail::fault;
namespace perturb = weft::detail::perturb;
using weft::Cancelled;
using weft::ExceptionGroup;
using weft::Task;
using weft::TaskGroup;
using weft_test::Failures;
using weft_test::Life;
using weft_test::reported;
using weft_test::Rng;

struct Counts {
  weft_test::TaskCounts tasks;
  std::atomic<std::uint64_t> groups{0};
  std::atomic<std::uint64_t> failures_thrown{0};    // by the workload itself
  std::atomic<std::uint64_t> failures_checked{0};   // found in their group's ExceptionGroup
  std::atomic<std::uint64_t> invariant_checks{0};
  // Real failures a group dropped because its caller was cancelled (see group_node()).
  std::atomic<std::uint64_t> violations{0};
};

// A failure of the workload, unique per throw.
struct ChaosError : std::runtime_error {
  explicit ChaosError(std::uint64_t id) : std::runtime_error("chaos " + std::to_string(id)) {}
};

constexpr std::size_t kPermits = 3;

struct World {
  explicit World(Counts& c) : counts(c) {}
  Counts& counts;
  weft::Semaphore permits{kPermits};
  weft::Event never;  // never set: waits on it end by timeout or cancellation only
  std::atomic<std::uint64_t> next_error{1};
  std::mutex report_mutex;
  std::string first_violation;  // guarded by report_mutex

  void violation(const std::string& what) {
    counts.violations.fetch_add(1);
    std::lock_guard<std::mutex> lock(report_mutex);
    if (first_violation.empty()) first_violation = what;
  }
  void check(bool ok, const char* what) {
    counts.invariant_checks.fetch_add(1);
    if (!ok) violation(what);
  }
  [[noreturn]] void fail() {
    counts.failures_thrown.fetch_add(1);
    throw ChaosError(next_error.fetch_add(1));
  }
};

// Set once the group that owns a task has returned: the task must not run any more.
using Returned = std::shared_ptr<std::atomic<bool>>;

Task<int> small(World& w, std::uint64_t seed) {
  Life life(w.counts.tasks);
  Rng rng{seed | 1};
  co_await weft::this_task::checkpoint();
  if (rng.below(16) == 0) w.fail();
  co_return 1;
}

Task<void> wait_never(weft::Event& never) { co_await never.wait(); }

Task<int> leaf(World& w, std::uint64_t seed, Returned owner_returned) {
  Life life(w.counts.tasks);
  Rng rng{seed | 1};
  int sum = 0;
  const int steps = 1 + static_cast<int>(rng.below(5));
  for (int step = 0; step < steps; ++step) {
    w.check(!owner_returned->load(), "a task ran after its group had returned");
    switch (rng.below(9)) {
      case 0:
        co_await weft::this_task::checkpoint();
        break;
      case 1:
        co_await weft::this_task::yield();
        break;
      case 2: {
        weft::SemaphorePermit permit = co_await w.permits.acquire();
        co_await weft::this_task::yield();
        break;
      }
      case 3:
        co_await weft::sleep_for(std::chrono::microseconds(rng.below(300)));
        break;
      case 4:
        try {
          co_await weft::timeout(std::chrono::microseconds(20 + rng.below(300)),
                                 wait_never(w.never));
        } catch (const weft::TimeoutError&) {
        }
        break;
      case 5: {
        auto [a, b] = co_await weft::safe_gather(small(w, rng.next()), small(w, rng.next()));
        sum += a + b;
        break;
      }
      case 6: {
        auto first = co_await weft::wait_any(small(w, rng.next()), small(w, rng.next()));
        if (first.outcome.has_value()) sum += first.outcome.value();
        break;
      }
      case 7: {
        auto outcomes = co_await weft::safe_gather(weft::return_exceptions,
                                                   small(w, rng.next()), small(w, rng.next()));
        sum += std::get<0>(outcomes).has_value() ? 1 : 0;
        break;
      }
      default:
        if (rng.below(8) == 0) w.fail();
        break;
    }
  }
  co_return sum;
}

std::string describe(const std::exception_ptr& e) {
  if (!e) return "a normal return";
  try {
    std::rethrow_exception(e);
  } catch (const ExceptionGroup& eg) {
    return std::string("ExceptionGroup: ") + eg.what();
  } catch (const std::exception& x) {
    return x.what();
  } catch (const Cancelled&) {
    return "Cancelled";
  } catch (...) {
    return "an unknown exception";
  }
}

Task<void> group_node(World& w, std::uint64_t seed, int depth, Returned owner_returned) {
  Life life(w.counts.tasks);
  w.counts.groups.fetch_add(1);
  Rng rng{seed | 1};
  auto returned = std::make_shared<std::atomic<bool>>(false);
  Failures failures;
  std::exception_ptr ended_with;
  try {
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      const int children = 1 + static_cast<int>(rng.below(4));
      for (int i = 0; i < children; ++i) {
        const std::uint64_t child_seed = rng.next();
        try {
          if (depth > 0 && rng.below(3) == 0)
            (void)tg.spawn(reported(group_node(w, child_seed, depth - 1, returned), failures));
          else
            (void)tg.spawn(reported(leaf(w, child_seed, returned), failures));
        } catch (const weft::UsageError&) {
          break;  // the group was cancelled meanwhile (a failure, an injected cancellation)
        }
      }
      co_await weft::this_task::checkpoint();
    });
  } catch (...) {
    ended_with = std::current_exception();
  }
  returned->store(true);
  w.check(!owner_returned->load(), "a group ran after its owner had returned");
  // Every real failure of a child is in this group's ExceptionGroup.
  std::vector<std::exception_ptr> members;
  try {
    if (ended_with) std::rethrow_exception(ended_with);
  } catch (const ExceptionGroup& eg) {
    members = eg.exceptions();
  } catch (...) {
  }
  // SPEC r2 (section 4): every real failure is in the ExceptionGroup, also when the group's
  // caller was cancelled meanwhile.
  for (const std::exception_ptr& f : failures.seen) {
    const bool found = std::find(members.begin(), members.end(), f) != members.end();
    w.counts.invariant_checks.fetch_add(1);
    if (found) {
      w.counts.failures_checked.fetch_add(1);
      continue;
    }
    w.violation("a child's real failure (" + describe(f) + ") is missing from its group's "
                "outcome (" + describe(ended_with) + ")");
  }
  if (ended_with) std::rethrow_exception(ended_with);
}

struct Totals {
  std::uint64_t rounds = 0;
  fault::Counts injected;
  perturb::Counts perturbed;
};

// Runs rounds until `rounds` are done or, when `seconds` > 0, until that much time passed.
// Round k uses the seed first_seed + k for the workload, the fault injection and, when
// `perturbation` perturbs anything (a perturbation build: perturb.hpp), the schedule
// perturbation: a failure names the seed, which replays that round first.
Totals run_chaos(Counts& counts, std::uint64_t first_seed, int rounds, double seconds,
                 perturb::Config perturbation = {}) {
  const bool perturbing = perturbation.yield_ppm != 0 || perturbation.spin_ppm != 0;
  Totals totals;
  weft::Runtime rt({.workers = 2});
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(seconds));
  for (std::uint64_t seed = first_seed;; ++seed) {
    if (seconds > 0 ? std::chrono::steady_clock::now() >= until
                    : totals.rounds >= static_cast<std::uint64_t>(rounds))
      break;
    World w(counts);
    fault::configure({.seed = seed, .cancel_ppm = 15'000, .throw_ppm = 10'000, .yield_ppm = 50'000});
    if (perturbing) {
      perturbation.seed = seed;
      perturb::configure(perturbation);
    }
    auto root_returned = std::make_shared<std::atomic<bool>>(false);
    weft::Future<void> f = rt.submit(group_node(w, seed, 3, root_returned));
    if (!f.wait_for(60s)) {
      ADD_FAILURE() << "seed " << seed << ": a group did not return within a minute";
      fault::disable();
      perturb::disable();
      break;  // ~Runtime cancels what is left
    }
    try {
      f.get();
    } catch (const ExceptionGroup&) {
    } catch (const Cancelled&) {
    } catch (const std::exception& e) {
      w.violation(std::string("the round ended with ") + e.what());
    }
    root_returned->store(true);
    fault::Counts c = fault::counts();
    const perturb::Counts p = perturb::counts();
    fault::disable();
    perturb::disable();
    totals.perturbed.points += p.points;
    totals.perturbed.yielded += p.yielded;
    totals.perturbed.spun += p.spun;
    totals.perturbed.steal_orders += p.steal_orders;
    totals.injected.points += c.points;
    totals.injected.cancelled += c.cancelled;
    totals.injected.thrown += c.thrown;
    totals.injected.yielded += c.yielded;
    ++totals.rounds;
    w.check(w.permits.available() == kPermits, "a semaphore permit was lost");
    w.check(counts.tasks.balanced(),
            "a task started and never ended");
    EXPECT_EQ(counts.violations.load(), 0u) << "seed " << seed << ": " << w.first_violation;
    if (counts.violations.load() != 0) break;
  }
  return totals;
}

}  // namespace
}  // namespace weft_chaos

// Stress test of safe_gather on a 4-worker runtime: several threads call block_on at once, each
// running random trees of nested gathers (variadic and vector) in which random leaves throw.
// Invariants checked after every tree:
//   - no task starts twice, and every task that started also ended;
//   - without failures, every task ran exactly once and the result is right;
//   - with failures, the exception that comes back is one of those thrown, as itself;
//   - nothing a gather started still runs after the root returned (a live count is back to 0).
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::kSanitized;

using weft::Runtime;
using weft::safe_gather;
using weft::Task;

struct LeafError : std::runtime_error {
  explicit LeafError(int id) : std::runtime_error("leaf " + std::to_string(id)), id(id) {}
  int id;
};

using weft_test::Rng;

struct Node {
  std::vector<int> children;
  bool throws = false;
  long value = 0;      // a leaf's result
  int busy_awaits = 0;  // a leaf's work before it returns or throws
};

// One tree, run once by one block_on call.
struct Trial {
  std::vector<Node> nodes;
  std::vector<std::atomic<int>> starts;
  std::vector<std::atomic<int>> ends;
  std::atomic<int> live{0};
  long expected = 0;
  bool any_throws = false;

  int build(Rng& rng, int depth, int max_depth, bool failures) {
    const int id = static_cast<int>(nodes.size());
    nodes.emplace_back();
    const bool leaf = depth == max_depth || (depth > 1 && rng.below(10) < 3);
    if (leaf) {
      Node& n = nodes[id];
      n.value = static_cast<long>(rng.below(1000));
      n.busy_awaits = static_cast<int>(rng.below(4) * 5);
      n.throws = failures && rng.below(30) == 0;
      any_throws = any_throws || n.throws;
      expected += n.value;
      return id;
    }
    const int fanout = 2 + static_cast<int>(rng.below(3));
    for (int k = 0; k < fanout; ++k) {
      const int child = build(rng, depth + 1, max_depth, failures);
      nodes[id].children.push_back(child);
    }
    return id;
  }

  Trial(Rng& rng, int max_depth, bool failures) {
    build(rng, 0, max_depth, failures);
    if (failures && !any_throws) {
      // At least one failure: the last leaf.
      for (int i = static_cast<int>(nodes.size()) - 1; i >= 0; --i) {
        if (nodes[i].children.empty()) {
          nodes[i].throws = true;
          any_throws = true;
          break;
        }
      }
    }
    starts = std::vector<std::atomic<int>>(nodes.size());
    ends = std::vector<std::atomic<int>>(nodes.size());
  }
};

Task<int> step(int i) { co_return i; }

Task<long> run_node(Trial& t, int id) {
  t.starts[id].fetch_add(1, std::memory_order_relaxed);
  t.live.fetch_add(1, std::memory_order_acq_rel);
  // Runs when the body ends, by co_return or by an exception, before the task reports back.
  struct Exit {
    Trial& t;
    int id;
    ~Exit() {
      t.ends[id].fetch_add(1, std::memory_order_relaxed);
      t.live.fetch_sub(1, std::memory_order_acq_rel);
    }
  } exit{t, id};

  const Node& n = t.nodes[id];
  if (n.children.empty()) {
    for (int i = 0; i < n.busy_awaits; ++i) co_await step(i);
    if (n.throws) throw LeafError(id);
    co_return n.value;
  }
  if (n.children.size() == 2) {
    auto [a, b] = co_await safe_gather(run_node(t, n.children[0]), run_node(t, n.children[1]));
    co_return a + b;
  }
  if (n.children.size() == 3 && id % 2 == 0) {
    auto [a, b, c] = co_await safe_gather(run_node(t, n.children[0]), run_node(t, n.children[1]),
                                          run_node(t, n.children[2]));
    co_return a + b + c;
  }
  std::vector<Task<long>> tasks;
  tasks.reserve(n.children.size());
  for (int child : n.children) tasks.push_back(run_node(t, child));
  long sum = 0;
  for (long v : co_await safe_gather(std::move(tasks))) sum += v;
  co_return sum;
}

struct CallerReport {
  int trials = 0;
  int failures_seen = 0;
  long tasks = 0;
  std::vector<std::string> errors;  // first few broken invariants
  void error(std::string what) {
    if (errors.size() < 10) errors.push_back(std::move(what));
  }
};

void run_caller(Runtime& rt, int caller, int trials, int max_depth, CallerReport& report) {
  Rng rng{0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(caller + 1)};
  for (int trial = 0; trial < trials; ++trial) {
    const bool failures = trial % 2 == 1;
    Trial t(rng, max_depth, failures);
    const std::string where = "caller " + std::to_string(caller) + " trial " + std::to_string(trial);
    int thrown_id = -1;
    long result = 0;
    bool other_exception = false;
    try {
      result = rt.block_on(run_node(t, 0));
    } catch (const LeafError& e) {
      thrown_id = e.id;
    } catch (...) {
      other_exception = true;
    }
    ++report.trials;
    report.tasks += static_cast<long>(t.nodes.size());

    if (t.live.load(std::memory_order_acquire) != 0)
      report.error(where + ": tasks still running after the root returned");
    for (std::size_t i = 0; i < t.nodes.size(); ++i) {
      const int s = t.starts[i].load(std::memory_order_relaxed);
      const int e = t.ends[i].load(std::memory_order_relaxed);
      if (s > 1) report.error(where + ": task " + std::to_string(i) + " ran " + std::to_string(s) + " times");
      if (e != s) report.error(where + ": task " + std::to_string(i) + " started but did not end");
      if (!t.any_throws && s != 1) report.error(where + ": task " + std::to_string(i) + " never ran");
    }
    if (other_exception) report.error(where + ": an exception nobody threw");
    if (t.any_throws) {
      if (thrown_id < 0) {
        report.error(where + ": failures were swallowed");
      } else if (!t.nodes[thrown_id].throws || t.starts[thrown_id].load() != 1) {
        report.error(where + ": the exception of leaf " + std::to_string(thrown_id) +
                     ", which did not throw");
      } else {
        ++report.failures_seen;
      }
    } else if (thrown_id >= 0) {
      report.error(where + ": an exception although no leaf throws");
    } else if (result != t.expected) {
      report.error(where + ": result " + std::to_string(result) + ", expected " +
                   std::to_string(t.expected));
    }
  }
}

TEST(GatherStress, ConcurrentBlockOnCallersWithRandomFailuresKeepEveryInvariant) {
  Runtime rt({.workers = 4});
  constexpr int kCallers = 4;
  const int trials = kSanitized ? 24 : 300;
  const int max_depth = kSanitized ? 6 : 8;

  std::vector<CallerReport> reports(kCallers);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] { run_caller(rt, c, trials, max_depth, reports[c]); });
  for (std::thread& t : callers) t.join();

  long tasks = 0;
  int failures = 0;
  for (int c = 0; c < kCallers; ++c) {
    const CallerReport& r = reports[c];
    EXPECT_EQ(r.trials, trials);
    for (const std::string& e : r.errors) ADD_FAILURE() << e;
    tasks += r.tasks;
    failures += r.failures_seen;
  }
  EXPECT_EQ(failures, kCallers * trials / 2) << "every failing tree reported a failure";
  const weft::WorkerStats s = rt.stats().total();
  std::printf("%d trees, %ld tasks, %llu steals\n", kCallers * trials, tasks,
              static_cast<unsigned long long>(s.steals));
}

TEST(GatherStress, DeepNarrowChainsOfGathersAcrossWorkers) {
  // Chains of two-task gathers, each link on whichever worker stole it, with a failure at the
  // bottom of every other chain: the exception climbs through every level on changing threads.
  Runtime rt({.workers = 4});
  const int depth = kSanitized ? 200 : 1000;
  const int rounds = kSanitized ? 10 : 50;
  struct Chain {
    static Task<long> link(int level, bool fail, std::atomic<int>& live) {
      live.fetch_add(1, std::memory_order_acq_rel);
      struct Exit {
        std::atomic<int>& live;
        ~Exit() { live.fetch_sub(1, std::memory_order_acq_rel); }
      } exit{live};
      if (level == 0) {
        if (fail) throw LeafError(0);
        co_return 1;
      }
      auto [a, b] = co_await safe_gather(link(level - 1, fail, live), step(1));
      co_return a + b;
    }
  };
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> live{0};
    const bool fail = round % 2 == 1;
    try {
      const long v = rt.block_on(Chain::link(depth, fail, live));
      EXPECT_FALSE(fail);
      EXPECT_EQ(v, depth + 1);
    } catch (const LeafError& e) {
      EXPECT_TRUE(fail);
      EXPECT_EQ(e.id, 0);
    }
    EXPECT_EQ(live.load(), 0) << "round " << round;
  }
}

}  // namespace

// weft/safe_gather.hpp: results in argument order, fail-fast error reporting and sibling
// cancellation, return_exceptions, the caller's cancellation, nesting, width, depth, misuse
// (SPEC §5; timeouts come later).
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::TaskError;
using weft_test::HangGuard;

using weft_test::kSanitized;
using weft_test::spin_until;

using weft::Cancelled;
using weft::Future;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::UsageError;

// The exception every failing task of these tests throws: which task threw it.

Task<int> value_of(int v) { co_return v; }
Task<std::string> text(std::string s) { co_return s; }
Task<double> half(int v) { co_return v / 2.0; }
Task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

Task<void> set_flag(std::atomic<bool>& flag) {
  flag.store(true);
  co_return;
}

Task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await safe_gather(fib(n - 1), fib(n - 2));
  co_return a + b;
}

// Spends a little time awaiting synchronous children: long enough for siblings to overlap.
Task<void> busy(int awaits) {
  for (int i = 0; i < awaits; ++i) co_await value_of(i);
}

// Counts a task's end, also when it ends by throwing.
struct CountOnExit {
  std::atomic<int>& counter;
  ~CountOnExit() { counter.fetch_add(1, std::memory_order_acq_rel); }
};


// ----------------------------------------------------------------------------------------------
// Results

TEST(SafeGather, VariadicResultsComeBackInArgumentOrder) {
  Runtime rt({.workers = 2});
  auto [a, b, c] = rt.block_on([]() -> Task<std::tuple<int, int, int>> {
    co_return co_await safe_gather(value_of(1), value_of(2), value_of(3));
  }());
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(c, 3);
}

TEST(SafeGather, VariadicGatherOfMixedTypesYieldsATupleOfThoseTypes) {
  Runtime rt({.workers = 2});
  using Result = std::tuple<int, std::string, std::monostate, double, std::unique_ptr<int>>;
  std::atomic<bool> void_ran{false};
  Result r = rt.block_on([](std::atomic<bool>& void_ran) -> Task<Result> {
    auto r = co_await safe_gather(value_of(7), text("seven"), set_flag(void_ran), half(7), boxed(77));
    static_assert(std::is_same_v<decltype(r), Result>);
    co_return r;
  }(void_ran));
  EXPECT_EQ(std::get<0>(r), 7);
  EXPECT_EQ(std::get<1>(r), "seven");
  EXPECT_TRUE(void_ran.load());
  EXPECT_DOUBLE_EQ(std::get<3>(r), 3.5);
  ASSERT_NE(std::get<4>(r), nullptr);
  EXPECT_EQ(*std::get<4>(r), 77);
}

TEST(SafeGather, VoidTasksYieldMonostate) {
  Runtime rt({.workers = 2});
  std::atomic<bool> a{false};
  std::atomic<bool> b{false};
  auto r = rt.block_on([](std::atomic<bool>& a, std::atomic<bool>& b)
                           -> Task<std::tuple<std::monostate, std::monostate>> {
    co_return co_await safe_gather(set_flag(a), set_flag(b));
  }(a, b));
  static_assert(std::is_same_v<decltype(r), std::tuple<std::monostate, std::monostate>>);
  EXPECT_TRUE(a.load());
  EXPECT_TRUE(b.load());
}

TEST(SafeGather, MoveOnlyResultsAreMovedIntoTheTuple) {
  Runtime rt({.workers = 2});
  auto [p, q] = rt.block_on(
      []() -> Task<std::tuple<std::unique_ptr<int>, std::unique_ptr<int>>> {
        co_return co_await safe_gather(boxed(1), boxed(2));
      }());
  ASSERT_NE(p, nullptr);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(*p, 1);
  EXPECT_EQ(*q, 2);
}

TEST(SafeGather, VectorResultsComeBackInArgumentOrder) {
  Runtime rt({.workers = 4});
  constexpr int kTasks = 200;
  const std::vector<int> r = rt.block_on([]() -> Task<std::vector<int>> {
    std::vector<Task<int>> tasks;
    // Unequal amounts of work, so that they finish out of order on the four workers.
    for (int i = 0; i < kTasks; ++i)
      tasks.push_back([](int i) -> Task<int> {
        co_await busy((kTasks - i) % 13 * 20);
        co_return i * 3;
      }(i));
    co_return co_await safe_gather(std::move(tasks));
  }());
  ASSERT_EQ(r.size(), static_cast<std::size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) EXPECT_EQ(r[i], i * 3) << "index " << i;
}

TEST(SafeGather, AVectorOfVoidTasksYieldsMonostates) {
  Runtime rt({.workers = 2});
  std::vector<std::atomic<bool>> flags(10);
  const std::vector<std::monostate> r = rt.block_on(
      [](std::vector<std::atomic<bool>>& flags) -> Task<std::vector<std::monostate>> {
        std::vector<Task<void>> tasks;
        for (auto& f : flags) tasks.push_back(set_flag(f));
        co_return co_await safe_gather(std::move(tasks));
      }(flags));
  EXPECT_EQ(r.size(), flags.size());
  for (auto& f : flags) EXPECT_TRUE(f.load());
}

TEST(SafeGather, AVectorOfMoveOnlyResultsIsReturnedInOrder) {
  Runtime rt({.workers = 2});
  const std::vector<std::unique_ptr<int>> r =
      rt.block_on([]() -> Task<std::vector<std::unique_ptr<int>>> {
        std::vector<Task<std::unique_ptr<int>>> tasks;
        for (int i = 0; i < 50; ++i) tasks.push_back(boxed(i));
        co_return co_await safe_gather(std::move(tasks));
      }());
  ASSERT_EQ(r.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    ASSERT_NE(r[i], nullptr);
    EXPECT_EQ(*r[i], i);
  }
}

TEST(SafeGather, AnEmptyVectorReturnsAnEmptyVector) {
  Runtime rt({.workers = 2});
  const std::vector<int> r = rt.block_on([]() -> Task<std::vector<int>> {
    co_return co_await safe_gather(std::vector<Task<int>>{});
  }());
  EXPECT_TRUE(r.empty());
  const std::vector<std::monostate> v = rt.block_on([]() -> Task<std::vector<std::monostate>> {
    co_return co_await safe_gather(std::vector<Task<void>>{});
  }());
  EXPECT_TRUE(v.empty());
}

TEST(SafeGather, ASingleTaskGatherReturnsItsResult) {
  Runtime rt({.workers = 2});
  const int v = rt.block_on([]() -> Task<int> {
    auto [only] = co_await safe_gather(value_of(5));
    std::vector<Task<int>> one;
    one.push_back(value_of(6));
    const std::vector<int> r = co_await safe_gather(std::move(one));
    co_return only * 10 + r.at(0);
  }());
  EXPECT_EQ(v, 56);
}

TEST(SafeGather, ASingleFailingTaskRethrowsItsException) {
  Runtime rt({.workers = 2});
  try {
    rt.block_on([]() -> Task<void> {
      co_await safe_gather([]() -> Task<int> {
        throw TaskError(4);
        co_return 0;
      }());
    }());
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 4);
  }
}

// ----------------------------------------------------------------------------------------------
// Failures

// Three tasks on two workers, arranged so that the last one fails first in time: task 2 throws
// at once, while tasks 0 and 1 (if they start at all) work on checkpoints until they are
// cancelled, and only then throw exceptions of their own. Their exceptions can only come after
// task 2's, whose failure cancelled them; and task 1 may never start (a task whose scope is
// cancelled before it starts never runs its body). So task 2's exception is the first in time,
// and the last in argument order, on any schedule.
struct FirstFailureScenario {
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  std::atomic<int> saw_cancelled{0};
  std::exception_ptr first_thrown;  // task 2's exception object, written before it fails

  Task<int> fail_once_cancelled(int id) {
    started.fetch_add(1);
    CountOnExit count{finished};
    bool cancelled = false;
    try {
      HangGuard guard;
      while (!guard.expired()) co_await weft::this_task::checkpoint();
    } catch (const Cancelled&) {
      cancelled = true;
    }
    if (cancelled) saw_cancelled.fetch_add(1);
    throw TaskError(id);
  }
  Task<int> task0() { return fail_once_cancelled(0); }
  Task<int> task1() { return fail_once_cancelled(1); }
  Task<int> task2() {
    started.fetch_add(1);
    CountOnExit count{finished};
    try {
      throw TaskError(2);
    } catch (...) {
      first_thrown = std::current_exception();
      throw;
    }
    co_return 2;
  }
};

struct FirstFailureSeen {
  int id = -1;
  bool same_object = false;  // the very object task 2 threw, not a copy or a wrapper
  int started = -1;
  int finished_when_caught = -1;
  int saw_cancelled = -1;
};

FirstFailureSeen first_failure_seen(FirstFailureScenario& s, const TaskError& e) {
  FirstFailureSeen seen;
  seen.id = e.id;
  seen.same_object = std::current_exception() == s.first_thrown;
  seen.started = s.started.load();
  seen.finished_when_caught = s.finished.load();
  seen.saw_cancelled = s.saw_cancelled.load();
  return seen;
}

TEST(SafeGather, TheFirstExceptionInTimeIsRethrownAsItself) {
  Runtime rt({.workers = 2});
  FirstFailureScenario s;
  const FirstFailureSeen seen = rt.block_on([](FirstFailureScenario& s) -> Task<FirstFailureSeen> {
    FirstFailureSeen seen;
    try {
      co_await safe_gather(s.task0(), s.task1(), s.task2());
    } catch (const TaskError& e) {  // the exception's own type, not a wrapper
      seen = first_failure_seen(s, e);
    }
    co_return seen;
  }(s));
  EXPECT_EQ(seen.id, 2);
  EXPECT_TRUE(seen.same_object) << "the first exception was not rethrown as itself";
  EXPECT_GE(seen.started, 2) << "task 0 runs inline and task 2 must have run";
  EXPECT_EQ(seen.finished_when_caught, seen.started)
      << "the gather returned before every task it started had finished";
  EXPECT_EQ(seen.saw_cancelled, seen.started - 1) << "every started sibling sees Cancelled";
}

TEST(SafeGather, TheFirstExceptionInTimeIsRethrownFromAVectorGather) {
  Runtime rt({.workers = 2});
  FirstFailureScenario s;
  const FirstFailureSeen seen = rt.block_on([](FirstFailureScenario& s) -> Task<FirstFailureSeen> {
    FirstFailureSeen seen;
    std::vector<Task<int>> tasks;
    tasks.push_back(s.task0());
    tasks.push_back(s.task1());
    tasks.push_back(s.task2());
    try {
      co_await safe_gather(std::move(tasks));
    } catch (const TaskError& e) {
      seen = first_failure_seen(s, e);
    }
    co_return seen;
  }(s));
  EXPECT_EQ(seen.id, 2);
  EXPECT_TRUE(seen.same_object);
  EXPECT_GE(seen.started, 2);
  EXPECT_EQ(seen.finished_when_caught, seen.started);
  EXPECT_EQ(seen.saw_cancelled, seen.started - 1);
}

// On one worker the tasks run in argument order: task 0 succeeds, task 1 fails and cancels the
// rest, so tasks 2 and 3 never run their bodies, and task 3's failure never happens.
TEST(SafeGather, OnOneWorkerTheFirstFailureIsTheFirstToRun) {
  Runtime rt({.workers = 1});
  struct Shared {
    std::atomic<int> finished{0};
    std::atomic<unsigned> ran{0};  // bit i: task i entered its body
  } s;
  auto fail = [](Shared& s, int id) -> Task<int> {
    s.ran.fetch_or(1u << id);
    CountOnExit count{s.finished};
    throw TaskError(id);
    co_return id;
  };
  auto succeed = [](Shared& s, int id) -> Task<int> {
    s.ran.fetch_or(1u << id);
    CountOnExit count{s.finished};
    co_await busy(10);
    co_return id;
  };
  try {
    rt.block_on([](Shared& s, auto fail, auto succeed) -> Task<void> {
      co_await safe_gather(succeed(s, 0), fail(s, 1), succeed(s, 2), fail(s, 3));
    }(s, fail, succeed));
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 1);
  }
  EXPECT_EQ(s.ran.load(), 0b0011u) << "a task started after its gather had failed";
  EXPECT_EQ(s.finished.load(), 2);
}

TEST(SafeGather, AnExceptionIsRethrownOnlyAfterEveryTaskFinished) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::atomic<bool> slow_started{false};
    std::atomic<bool> slow_saw_cancelled{false};
    std::atomic<bool> slow_finished{false};
    std::atomic<int> finished{0};
  } s;
  // Task 0 runs inline; task 1 is stolen by the other worker and is still working (on
  // checkpoints) when task 0 fails. Cancelled, it cleans up at length before it ends.
  auto thrower = [](Shared& s) -> Task<int> {
    CountOnExit count{s.finished};
    spin_until([&] { return s.slow_started.load(std::memory_order_acquire); });
    throw TaskError(0);
    co_return 0;
  };
  auto slow = [](Shared& s) -> Task<int> {
    CountOnExit count{s.finished};
    s.slow_started.store(true, std::memory_order_release);
    try {
      HangGuard guard;
      while (!guard.expired()) co_await weft::this_task::checkpoint();
    } catch (const Cancelled&) {
      s.slow_saw_cancelled.store(true);
      // Cleanup that takes a while and does not suspend.
      volatile std::uint64_t sink = 0;
      for (std::uint64_t i = 0; i < 2'000'000; ++i) sink = sink + i;
      s.slow_finished.store(true, std::memory_order_release);
      throw;
    }
    co_return 1;
  };
  struct Seen {
    int id = -1;
    bool slow_saw_cancelled = false;
    bool slow_finished = false;
    int finished = -1;
  };
  const Seen seen = rt.block_on([](Shared& s, auto thrower, auto slow) -> Task<Seen> {
    Seen seen;
    try {
      co_await safe_gather(thrower(s), slow(s), value_of(2), busy(100));
    } catch (const TaskError& e) {
      seen.id = e.id;
      seen.slow_saw_cancelled = s.slow_saw_cancelled.load();
      seen.slow_finished = s.slow_finished.load(std::memory_order_acquire);
      seen.finished = s.finished.load();
    }
    co_return seen;
  }(s, thrower, slow));
  EXPECT_EQ(seen.id, 0);
  EXPECT_TRUE(seen.slow_saw_cancelled) << "the failure did not cancel the running sibling";
  EXPECT_TRUE(seen.slow_finished) << "the gather returned while a task was still running";
  EXPECT_EQ(seen.finished, 2);
}

// A sibling parked in a wait (not at a checkpoint) is woken by the failure's cancellation.
TEST(SafeGather, AFailureWakesAndCancelsASiblingParkedOnAnEvent) {
  weft::Event never_set;
  Runtime rt({.workers = 2});
  std::atomic<bool> waiting{false};
  std::atomic<bool> saw_cancelled{false};
  auto waiter = [](weft::Event& e, std::atomic<bool>& waiting,
                   std::atomic<bool>& saw_cancelled) -> Task<void> {
    waiting.store(true);
    try {
      co_await e.wait();
    } catch (const Cancelled&) {
      saw_cancelled.store(true);
      throw;
    }
  };
  auto thrower = [](std::atomic<bool>& waiting) -> Task<void> {
    HangGuard guard;
    while (!waiting.load() && !guard.expired()) co_await weft::this_task::yield();
    throw TaskError(1);
  };
  try {
    rt.block_on([](weft::Event& e, std::atomic<bool>& waiting, std::atomic<bool>& saw_cancelled,
                   auto waiter, auto thrower) -> Task<void> {
      co_await safe_gather(waiter(e, waiting, saw_cancelled), thrower(waiting));
    }(never_set, waiting, saw_cancelled, waiter, thrower));
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 1);
  }
  EXPECT_TRUE(saw_cancelled.load());
}

// A task that fails in a nested gather cancels its siblings there, and the failure propagating
// out of the inner gather cancels the outer siblings too.
TEST(SafeGather, AFailureInANestedGatherCancelsTheOuterSiblings) {
  Runtime rt({.workers = 2});
  std::atomic<int> cancelled{0};
  auto worker = [](std::atomic<int>& cancelled) -> Task<int> {
    try {
      HangGuard guard;
      while (!guard.expired()) co_await weft::this_task::yield();
    } catch (const Cancelled&) {
      cancelled.fetch_add(1);
      throw;
    }
    co_return 0;
  };
  auto failing = []() -> Task<int> {
    co_await weft::this_task::yield();
    throw TaskError(7);
  };
  auto inner = [](std::atomic<int>& cancelled, auto worker, auto failing) -> Task<int> {
    auto [a, b] = co_await safe_gather(worker(cancelled), failing());
    co_return a + b;
  };
  try {
    rt.block_on([](std::atomic<int>& cancelled, auto worker, auto failing,
                   auto inner) -> Task<void> {
      co_await safe_gather(worker(cancelled), inner(cancelled, worker, failing),
                           worker(cancelled));
    }(cancelled, worker, failing, inner));
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 7);
  }
  // Each worker either saw Cancelled or never started; at least the inner sibling and the
  // inline outer task started (they yield, so every task gets to start on two workers).
  EXPECT_GE(cancelled.load(), 1);
  EXPECT_LE(cancelled.load(), 3);
}

TEST(SafeGather, AFailureInANestedGatherPropagatesOutwards) {
  Runtime rt({.workers = 4});
  auto leaf = [](int id) -> Task<int> {
    if (id == 5) throw TaskError(id);
    co_return id;
  };
  auto middle = [leaf](int base) -> Task<int> {
    auto [a, b, c] = co_await safe_gather(leaf(base), leaf(base + 1), leaf(base + 2));
    co_return a + b + c;
  };
  try {
    rt.block_on([middle]() -> Task<int> {
      auto [x, y, z] = co_await safe_gather(middle(0), middle(3), middle(6));
      co_return x + y + z;
    }());
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 5);
  }
}

TEST(SafeGather, ExceptionsThatAreNotStdExceptionsPropagateToo) {
  Runtime rt({.workers = 2});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    co_await safe_gather(value_of(1), []() -> Task<int> {
      throw 42;
      co_return 0;
    }());
  }()),
               int);
}

// ----------------------------------------------------------------------------------------------
// Structure: nesting, depth, width, exactly-once

TEST(SafeGather, NestedGathersCombineResults) {
  Runtime rt({.workers = 4});
  auto pair = [](int a, int b) -> Task<int> {
    auto [x, y] = co_await safe_gather(value_of(a), value_of(b));
    co_return x * 10 + y;
  };
  auto all = [](std::vector<Task<int>> tasks) -> Task<std::vector<int>> {
    co_return co_await safe_gather(std::move(tasks));
  };
  const std::vector<int> r = rt.block_on([pair, all]() -> Task<std::vector<int>> {
    std::vector<Task<int>> tasks;
    for (int i = 0; i < 8; ++i) tasks.push_back(pair(i, i + 1));
    auto [v, extra] = co_await safe_gather(all(std::move(tasks)), pair(9, 9));
    v.push_back(extra);
    co_return v;
  }());
  ASSERT_EQ(r.size(), 9u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(r[i], i * 10 + i + 1);
  EXPECT_EQ(r[8], 99);
}

TEST(SafeGather, DeepRecursionIsCorrectOnOneTwoAndFourWorkers) {
  for (unsigned workers : {1u, 2u, 4u}) {
    Runtime rt({.workers = workers});
    EXPECT_EQ(rt.block_on(fib(25)), 75025) << workers << " workers";
  }
}

// Many short recursions: chains of gathers whose first child suspends (its sibling was
// stolen) hand their joins over to other workers again and again, while the worker that started
// them settles the gathers it had open.
TEST(SafeGather, RepeatedRecursiveGathersOnTwoAndFourWorkersAreCorrect) {
  for (unsigned workers : {2u, 4u}) {
    Runtime rt({.workers = workers});
    const int rounds = kSanitized ? 400 : 1000;
    for (int round = 0; round < rounds; ++round)
      ASSERT_EQ(rt.block_on(fib(16)), 987) << workers << " workers, round " << round;
  }
}

TEST(SafeGather, AWideGatherOfAHundredThousandTasksIsCorrect) {
  Runtime rt({.workers = 4});
  constexpr int kTasks = 100'000;
  const std::vector<int> r = rt.block_on([]() -> Task<std::vector<int>> {
    std::vector<Task<int>> tasks;
    tasks.reserve(kTasks);
    for (int i = 0; i < kTasks; ++i) tasks.push_back(value_of(i));
    co_return co_await safe_gather(std::move(tasks));
  }());
  ASSERT_EQ(r.size(), static_cast<std::size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i)
    if (r[i] != i) FAIL() << "index " << i << " holds " << r[i];
}

// A tree of tasks, numbered as a complete `fanout`-ary tree: node i's children are
// i*fanout+1 .. i*fanout+fanout. Each node counts its own runs.
struct Tree {
  Tree(int fanout, int depth) : fanout(fanout), depth(depth) {
    long n = 0;
    long level = 1;
    for (int d = 0; d <= depth; ++d, level *= fanout) n += level;
    runs = std::vector<std::atomic<int>>(static_cast<std::size_t>(n));
  }
  const int fanout;
  const int depth;
  std::vector<std::atomic<int>> runs;
};

Task<long> visit(Tree& t, long id, int depth) {
  t.runs[static_cast<std::size_t>(id)].fetch_add(1, std::memory_order_relaxed);
  if (depth == t.depth) co_return 1;
  std::vector<Task<long>> children;
  for (int k = 1; k <= t.fanout; ++k) children.push_back(visit(t, id * t.fanout + k, depth + 1));
  long count = 1;
  for (long c : co_await safe_gather(std::move(children))) count += c;
  co_return count;
}

TEST(SafeGather, EveryTaskRunsExactlyOnceOnFourWorkers) {
  Runtime rt({.workers = 4});
  const int rounds = kSanitized ? 2 : 10;
  for (int round = 0; round < rounds; ++round) {
    Tree t(3, 8);  // 9841 tasks
    const long visited = rt.block_on(visit(t, 0, 0));
    EXPECT_EQ(visited, static_cast<long>(t.runs.size()));
    long wrong = 0;
    for (std::size_t i = 0; i < t.runs.size(); ++i)
      if (t.runs[i].load() != 1) ++wrong;
    EXPECT_EQ(wrong, 0) << "tasks that did not run exactly once, round " << round;
  }
}

TEST(SafeGather, ConcurrentGathersFromManyRootsAreIndependent) {
  Runtime rt({.workers = 4});
  std::vector<Future<long>> futures;
  for (int i = 0; i < 16; ++i) futures.push_back(rt.submit(fib(10 + i % 6)));
  const long expected[] = {55, 89, 144, 233, 377, 610};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(futures[i].get(), expected[i % 6]) << i;
}

// ----------------------------------------------------------------------------------------------
// Misuse and cancellation

using weft_test::Eager;

Eager gather_outside_a_runtime(bool& usage_error, std::atomic<bool>& ran) {
  try {
    co_await safe_gather(set_flag(ran), set_flag(ran));
  } catch (const UsageError&) {
    usage_error = true;
  }
}

Eager vector_gather_outside_a_runtime(bool& usage_error, std::atomic<bool>& ran) {
  try {
    std::vector<Task<void>> tasks;
    tasks.push_back(set_flag(ran));
    tasks.push_back(set_flag(ran));
    co_await safe_gather(std::move(tasks));
  } catch (const UsageError&) {
    usage_error = true;
  }
}

Eager task_gathering_outside_a_runtime(bool& usage_error, std::atomic<bool>& ran) {
  try {
    co_await [](std::atomic<bool>& ran) -> Task<void> {
      co_await safe_gather(set_flag(ran), set_flag(ran));
    }(ran);
  } catch (const UsageError&) {
    usage_error = true;
  }
}

TEST(SafeGather, AwaitedOutsideARuntimeThrowsUsageError) {
  {
    bool usage_error = false;
    std::atomic<bool> ran{false};
    gather_outside_a_runtime(usage_error, ran);
    EXPECT_TRUE(usage_error);
    EXPECT_FALSE(ran.load()) << "a child ran although the gather was refused";
  }
  {
    bool usage_error = false;
    std::atomic<bool> ran{false};
    vector_gather_outside_a_runtime(usage_error, ran);
    EXPECT_TRUE(usage_error);
    EXPECT_FALSE(ran.load());
  }
  {
    // The same from a weft Task that is itself awaited outside any runtime.
    bool usage_error = false;
    std::atomic<bool> ran{false};
    task_gathering_outside_a_runtime(usage_error, ran);
    EXPECT_TRUE(usage_error);
    EXPECT_FALSE(ran.load());
  }
}

TEST(SafeGather, GatheringAnAlreadyAwaitedTaskThrowsUsageError) {
  Runtime rt({.workers = 2});
  std::atomic<bool> sibling_ran{false};
  const bool threw = rt.block_on([](std::atomic<bool>& sibling_ran) -> Task<bool> {
    Task<int> t = value_of(1);
    co_await t;
    try {
      co_await safe_gather(std::move(t), [](std::atomic<bool>& ran) -> Task<int> {
        ran.store(true);
        co_return 2;
      }(sibling_ran));
    } catch (const UsageError&) {
      co_return true;
    }
    co_return false;
  }(sibling_ran));
  EXPECT_TRUE(threw);
  EXPECT_FALSE(sibling_ran.load()) << "a gather that was refused started a task";
}

TEST(SafeGather, GatheringAMovedFromTaskThrowsUsageError) {
  Runtime rt({.workers = 2});
  std::atomic<bool> ran{false};
  const bool threw = rt.block_on([](std::atomic<bool>& ran) -> Task<bool> {
    std::vector<Task<void>> tasks;
    tasks.push_back(set_flag(ran));
    tasks.push_back(Task<void>());
    try {
      co_await safe_gather(std::move(tasks));
    } catch (const UsageError&) {
      co_return true;
    }
    co_return false;
  }(ran));
  EXPECT_TRUE(threw);
  EXPECT_FALSE(ran.load());
}

TEST(SafeGather, AGatherInAnAlreadyCancelledTaskThrowsCancelledWithoutStartingAnything) {
  Runtime rt({.workers = 2});
  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> waiting{false};
  std::atomic<bool> child_ran{false};
  Future<void> f = rt.submit([](std::atomic<bool>& waiting, std::atomic<bool>& cancel_requested,
                                std::atomic<bool>& child_ran) -> Task<void> {
    waiting.store(true);
    spin_until([&] { return cancel_requested.load(); });
    co_await safe_gather(set_flag(child_ran), set_flag(child_ran));
  }(waiting, cancel_requested, child_ran));
  ASSERT_TRUE(spin_until([&] { return waiting.load(); }));
  f.cancel();
  cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(child_ran.load());
}

// ----------------------------------------------------------------------------------------------
// return_exceptions

// Succeeds after passing through checkpoints, a yield and an await: it would see Cancelled at
// any of them if its gather had been cancelled.
Task<int> value_after_suspension_points(int v) {
  co_await weft::this_task::checkpoint();
  co_await weft::this_task::yield();
  const int w = co_await value_of(v);
  co_await weft::this_task::checkpoint();
  co_return w;
}

Task<void> flag_after_suspension_points(std::atomic<bool>& flag) {
  co_await weft::this_task::checkpoint();
  co_await weft::this_task::yield();
  co_await busy(3);
  co_await weft::this_task::checkpoint();
  flag.store(true);
}

Task<int> throws_int(int id) {
  throw TaskError(id);
  co_return id;
}

Task<void> throws_void(int id) {
  throw TaskError(id);
  co_return;
}

// The id of the TaskError in `e`; -2 for anything else.
int error_id(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const TaskError& t) {
    return t.id;
  } catch (...) {
    return -2;
  }
}

// On one worker the tasks run in argument order, so every success below runs after the first
// failure: with return_exceptions that failure cancels nothing.
TEST(SafeGather, ReturnExceptionsReturnsEveryOutcomeOfAVariadicGatherAndCancelsNothing) {
  Runtime rt({.workers = 1});
  std::atomic<bool> void_ran{false};
  using Result = std::tuple<weft::Outcome<int>, weft::Outcome<int>, weft::Outcome<void>,
                            weft::Outcome<void>, weft::Outcome<std::string>>;
  Result r = rt.block_on([](std::atomic<bool>& void_ran) -> Task<Result> {
    auto r = co_await safe_gather(weft::return_exceptions, throws_int(1),
                                  value_after_suspension_points(2), throws_void(3),
                                  flag_after_suspension_points(void_ran), text("four"));
    static_assert(std::is_same_v<decltype(r), Result>);
    co_return r;
  }(void_ran));
  ASSERT_TRUE(std::get<0>(r).has_exception());
  EXPECT_EQ(error_id(std::get<0>(r).exception()), 1);
  EXPECT_FALSE(std::get<0>(r).is_cancelled());
  ASSERT_TRUE(std::get<1>(r).has_value()) << "a failure cancelled a sibling";
  EXPECT_EQ(std::get<1>(r).value(), 2);
  ASSERT_TRUE(std::get<2>(r).has_exception());
  EXPECT_EQ(error_id(std::get<2>(r).exception()), 3);
  ASSERT_TRUE(std::get<3>(r).has_value()) << "a failure cancelled a sibling";
  static_assert(std::is_same_v<decltype(std::get<3>(r).value()), std::monostate&>);
  EXPECT_TRUE(void_ran.load());
  ASSERT_TRUE(std::get<4>(r).has_value());
  EXPECT_EQ(std::get<4>(r).value(), "four");
}

TEST(SafeGather, ReturnExceptionsReturnsEveryOutcomeOfAVectorGatherInArgumentOrder) {
  Runtime rt({.workers = 2});
  constexpr int kTasks = 10;
  std::atomic<int> failed{0};
  // Even tasks fail; odd ones go on through suspension points after every failure happened.
  auto task = [](std::atomic<int>& failed, int i) -> Task<int> {
    if (i % 2 == 0) {
      failed.fetch_add(1);
      throw TaskError(i);
    }
    HangGuard guard;
    while (failed.load() < kTasks / 2 && !guard.expired()) co_await weft::this_task::yield();
    const int v = co_await value_after_suspension_points(i * 10);
    co_return v;
  };
  const std::vector<weft::Outcome<int>> r =
      rt.block_on([](std::atomic<int>& failed, auto task) -> Task<std::vector<weft::Outcome<int>>> {
        std::vector<Task<int>> tasks;
        for (int i = 0; i < kTasks; ++i) tasks.push_back(task(failed, i));
        co_return co_await safe_gather(weft::return_exceptions, std::move(tasks));
      }(failed, task));
  ASSERT_EQ(r.size(), static_cast<std::size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) {
    if (i % 2 == 0) {
      ASSERT_TRUE(r[i].has_exception()) << i;
      EXPECT_EQ(error_id(r[i].exception()), i);
    } else {
      ASSERT_TRUE(r[i].has_value()) << "task " << i << " did not return its value";
      EXPECT_EQ(r[i].value(), i * 10);
    }
  }
}

TEST(SafeGather, ReturnExceptionsReturnsEveryOutcomeOfAVectorOfVoidTasks) {
  Runtime rt({.workers = 1});
  std::vector<std::atomic<bool>> ran(6);
  const std::vector<weft::Outcome<void>> r = rt.block_on(
      [](std::vector<std::atomic<bool>>& ran) -> Task<std::vector<weft::Outcome<void>>> {
        std::vector<Task<void>> tasks;
        for (int i = 0; i < 6; ++i)
          tasks.push_back(i % 3 == 0 ? throws_void(i) : flag_after_suspension_points(ran[i]));
        co_return co_await safe_gather(weft::return_exceptions, std::move(tasks));
      }(ran));
  ASSERT_EQ(r.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    if (i % 3 == 0) {
      ASSERT_TRUE(r[i].has_exception()) << i;
      EXPECT_EQ(error_id(r[i].exception()), i);
      EXPECT_FALSE(ran[i].load());
    } else {
      EXPECT_TRUE(r[i].has_value()) << "task " << i << " was cancelled by a failure";
      EXPECT_TRUE(ran[i].load()) << i;
    }
  }
}

// ----------------------------------------------------------------------------------------------
// The caller's cancellation

// Four children that work (yielding) until they are cancelled, gathered in one of four ways.
struct CallerCancellation {
  enum class Mode { Variadic, Vector, ReturnExceptionsVariadic, ReturnExceptionsVector };

  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  std::atomic<int> saw_cancelled{0};
  std::atomic<int> finished_when_propagated{-1};
  std::atomic<bool> gather_returned{false};

  Task<int> child(int id) {
    started.fetch_add(1);
    CountOnExit count{finished};
    try {
      HangGuard guard;
      while (!guard.expired()) co_await weft::this_task::yield();
    } catch (const Cancelled&) {
      saw_cancelled.fetch_add(1);
      throw;
    }
    co_return id;
  }

  std::vector<Task<int>> children() {
    std::vector<Task<int>> v;
    for (int i = 0; i < 4; ++i) v.push_back(child(i));
    return v;
  }

  Task<void> gather(Mode mode) {
    try {
      if (mode == Mode::Variadic) {
        co_await safe_gather(child(0), child(1), child(2), child(3));
      } else if (mode == Mode::Vector) {
        co_await safe_gather(children());
      } else if (mode == Mode::ReturnExceptionsVariadic) {
        co_await safe_gather(weft::return_exceptions, child(0), child(1), child(2), child(3));
      } else {
        co_await safe_gather(weft::return_exceptions, children());
      }
      gather_returned.store(true);
    } catch (const Cancelled&) {
      finished_when_propagated.store(finished.load());
      throw;
    }
  }
};

TEST(SafeGather, CancellingTheCallerCancelsAndAwaitsEveryTaskThenCancelledPropagatesInEveryMode) {
  using Mode = CallerCancellation::Mode;
  for (Mode mode : {Mode::Variadic, Mode::Vector, Mode::ReturnExceptionsVariadic,
                    Mode::ReturnExceptionsVector}) {
    SCOPED_TRACE(static_cast<int>(mode));
    CallerCancellation s;
    Runtime rt({.workers = 2});
    Future<void> f = rt.submit(s.gather(mode));
    ASSERT_TRUE(spin_until([&] { return s.started.load() == 4; }));
    f.cancel();
    EXPECT_THROW(f.get(), Cancelled);
    EXPECT_EQ(s.finished_when_propagated.load(), 4)
        << "Cancelled propagated before every task had finished";
    EXPECT_EQ(s.saw_cancelled.load(), 4);
    EXPECT_FALSE(s.gather_returned.load()) << "the gather returned normally to a cancelled caller";
  }
}

TEST(SafeGather, EveryFormOfGatherInAnAlreadyCancelledTaskStartsNothing) {
  struct Shared {
    std::atomic<bool> waiting{false};
    std::atomic<bool> cancel_requested{false};
    std::atomic<bool> child_ran{false};
    std::atomic<int> threw{0};
  } s;
  Runtime rt({.workers = 2});
  Future<void> f = rt.submit([](Shared& s) -> Task<void> {
    s.waiting.store(true);
    spin_until([&] { return s.cancel_requested.load(); });
    try {
      co_await safe_gather(weft::return_exceptions, set_flag(s.child_ran), set_flag(s.child_ran));
    } catch (const Cancelled&) {
      s.threw.fetch_add(1);
    }
    try {
      std::vector<Task<void>> tasks;
      tasks.push_back(set_flag(s.child_ran));
      tasks.push_back(set_flag(s.child_ran));
      co_await safe_gather(std::move(tasks));
    } catch (const Cancelled&) {
      s.threw.fetch_add(1);
    }
    try {
      std::vector<Task<void>> tasks;
      tasks.push_back(set_flag(s.child_ran));
      co_await safe_gather(weft::return_exceptions, std::move(tasks));
    } catch (const Cancelled&) {
      s.threw.fetch_add(1);
    }
    co_await safe_gather(set_flag(s.child_ran), set_flag(s.child_ran));
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.waiting.load(); }));
  f.cancel();
  s.cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(s.threw.load(), 3);
  EXPECT_FALSE(s.child_ran.load()) << "a gather in a cancelled task started a task";
}

// ----------------------------------------------------------------------------------------------
// The bucket uploads of seeds/003: three uploads gathered; Bucket-B fails first. asyncio's
// plain gather lets A and C run on unmanaged; weft's cancels them and awaits them before the
// caller sees the error. The sleeps are Events that the test sets, standing in for time.

struct IOError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Buckets {
  weft::Event a_time;  // upload_bucket("Bucket-A", 1.5)
  weft::Event b_time;  // upload_bucket("Bucket-B", 0.5, fail=True)
  weft::Event c_time;  // upload_bucket("Bucket-C", 1.0)
  std::atomic<int> started{0};
  std::atomic<int> ended{0};

  std::mutex mutex;
  std::vector<std::string> lines;  // guarded by mutex
  void print(std::string line) {
    std::lock_guard<std::mutex> lock(mutex);
    lines.push_back(std::move(line));
  }
  std::vector<std::string> output() {
    std::lock_guard<std::mutex> lock(mutex);
    return lines;
  }
};

bool printed(const std::vector<std::string>& lines, std::string_view line) {
  for (const std::string& l : lines)
    if (l == line) return true;
  return false;
}

Task<std::string> upload_bucket(Buckets& s, std::string name, weft::Event& delay, bool fail) {
  CountOnExit count{s.ended};
  s.print("Starting upload to " + name);
  s.started.fetch_add(1);
  try {
    co_await delay.wait();  // asyncio.sleep(delay)
  } catch (const Cancelled&) {
    s.print("Cancelled upload to " + name);
    throw;
  }
  if (fail) {
    s.print("Failing upload to " + name);
    throw IOError("Failed uploading to " + name);
  }
  s.print("Finished upload to " + name);
  co_return "Success " + name;
}

TEST(SafeGather, TheFailingBucketUploadCancelsTheOthersAndAwaitsThemBeforeTheCallerSeesIt) {
  Buckets s;
  Runtime rt({.workers = 2});
  struct Seen {
    std::string caught;
    std::vector<std::string> output_when_caught;
    int ended_when_caught = -1;
  };
  Future<Seen> f = rt.submit([](Buckets& s) -> Task<Seen> {
    Seen seen;
    try {
      auto results = co_await safe_gather(upload_bucket(s, "Bucket-A", s.a_time, false),
                                          upload_bucket(s, "Bucket-B", s.b_time, true),
                                          upload_bucket(s, "Bucket-C", s.c_time, false));
      (void)results;
    } catch (const std::exception& e) {  // Cancelled would not be caught here
      seen.caught = e.what();
      seen.output_when_caught = s.output();
      seen.ended_when_caught = s.ended.load();
    }
    co_return seen;
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.started.load() == 3; }));
  s.b_time.set();  // 0.5 s: Bucket-B fails
  const Seen seen = f.get();
  EXPECT_EQ(seen.caught, "Failed uploading to Bucket-B");
  EXPECT_EQ(seen.ended_when_caught, 3) << "the error reached the caller while uploads still ran";
  EXPECT_TRUE(printed(seen.output_when_caught, "Cancelled upload to Bucket-A"));
  EXPECT_TRUE(printed(seen.output_when_caught, "Cancelled upload to Bucket-C"));

  // "Give outstanding tasks a moment": the times A and C waited for come, and other work runs.
  s.c_time.set();
  s.a_time.set();
  rt.block_on([]() -> Task<void> {
    for (int i = 0; i < 100; ++i) co_await weft::this_task::yield();
  }());
  const std::vector<std::string> output = s.output();
  EXPECT_FALSE(printed(output, "Finished upload to Bucket-A")) << "Bucket-A kept running";
  EXPECT_FALSE(printed(output, "Finished upload to Bucket-C")) << "Bucket-C kept running";
  EXPECT_EQ(output.size(), 6u);  // three starts, B's failure, two cancellations
}

TEST(SafeGather, WithReturnExceptionsEveryBucketUploadResultComesBack) {
  Buckets s;
  Runtime rt({.workers = 2});
  using Results =
      std::tuple<weft::Outcome<std::string>, weft::Outcome<std::string>, weft::Outcome<std::string>>;
  Future<Results> f = rt.submit([](Buckets& s) -> Task<Results> {
    co_return co_await safe_gather(weft::return_exceptions,
                                   upload_bucket(s, "Bucket-A", s.a_time, false),
                                   upload_bucket(s, "Bucket-B", s.b_time, true),
                                   upload_bucket(s, "Bucket-C", s.c_time, false));
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.started.load() == 3; }));
  s.b_time.set();  // 0.5 s: Bucket-B fails; A and C are still waiting and are not cancelled
  ASSERT_TRUE(spin_until([&] { return printed(s.output(), "Failing upload to Bucket-B"); }));
  s.c_time.set();  // 1.0 s
  s.a_time.set();  // 1.5 s
  Results r = f.get();
  ASSERT_TRUE(std::get<0>(r).has_value());
  EXPECT_EQ(std::get<0>(r).value(), "Success Bucket-A");
  ASSERT_TRUE(std::get<1>(r).has_exception());
  try {
    std::rethrow_exception(std::get<1>(r).exception());
  } catch (const IOError& e) {
    EXPECT_STREQ(e.what(), "Failed uploading to Bucket-B");
  } catch (...) {
    ADD_FAILURE() << "Bucket-B's outcome is not its IOError";
  }
  ASSERT_TRUE(std::get<2>(r).has_value());
  EXPECT_EQ(std::get<2>(r).value(), "Success Bucket-C");
  const std::vector<std::string> output = s.output();
  EXPECT_FALSE(printed(output, "Cancelled upload to Bucket-A"));
  EXPECT_FALSE(printed(output, "Cancelled upload to Bucket-C"));
}

// ----------------------------------------------------------------------------------------------
// Dynamic fan-out held in the caller's frame: InlineVector

// Counts the placements of `n` queens below a partial board, one child per legal column,
// the way a dynamic fan-out is written without a heap allocation per node.
template <int N>
Task<long> queens(int row, std::array<char, N> board) {
  if (row == N) co_return 1;
  weft::InlineVector<Task<long>, N> children;
  for (int col = 0; col < N; ++col) {
    bool legal = true;
    for (int r = 0; r < row && legal; ++r) {
      const int d = board[r] - col;
      legal = d != 0 && d != row - r && d != r - row;
    }
    if (!legal) continue;
    board[row] = static_cast<char>(col);
    children.push_back(queens<N>(row + 1, board));
  }
  long total = 0;
  for (long c : co_await safe_gather(std::move(children))) total += c;
  co_return total;
}

TEST(SafeGather, AnInlineVectorGatherReturnsAnInlineVectorInArgumentOrder) {
  Runtime rt({.workers = 4});
  const weft::InlineVector<int, 64> r = rt.block_on([]() -> Task<weft::InlineVector<int, 64>> {
    weft::InlineVector<Task<int>, 64> tasks;
    // Unequal amounts of work, so that they finish out of order on the four workers.
    for (int i = 0; i < 64; ++i)
      tasks.push_back([](int i) -> Task<int> {
        co_await busy((64 - i) % 13 * 20);
        co_return i * 3;
      }(i));
    co_return co_await safe_gather(std::move(tasks));
  }());
  ASSERT_EQ(r.size(), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(r[i], i * 3) << "index " << i;
}

TEST(SafeGather, ADynamicFanOutThroughInlineVectorsCountsEveryNQueensSolution) {
  for (unsigned workers : {1u, 2u, 4u}) {
    Runtime rt({.workers = workers});
    EXPECT_EQ(rt.block_on(queens<8>(0, {})), 92) << workers << " workers";
  }
}

TEST(SafeGather, AnEmptyInlineVectorGatherReturnsAtOnceWithNoResults) {
  Runtime rt({.workers = 1});
  const std::size_t n = rt.block_on([]() -> Task<std::size_t> {
    auto r = co_await safe_gather(weft::InlineVector<Task<void>, 4>{});
    static_assert(std::is_same_v<decltype(r), weft::InlineVector<std::monostate, 4>>);
    co_return r.size();
  }());
  EXPECT_EQ(n, 0u);
}

TEST(SafeGather, AnInlineVectorGatherFailsFastAndAwaitsTheCancelledSiblings) {
  Runtime rt({.workers = 2});
  std::atomic<int> ended{0};
  auto parked = [](std::atomic<int>& ended) -> Task<int> {
    CountOnExit count{ended};
    weft::Event never;
    co_await never.wait();
    co_return 0;
  };
  auto failing = [](std::atomic<int>& ended) -> Task<int> {
    CountOnExit count{ended};
    co_await weft::this_task::yield();
    throw TaskError(7);
  };
  try {
    rt.block_on([](std::atomic<int>& ended, auto parked, auto failing) -> Task<void> {
      weft::InlineVector<Task<int>, 8> tasks;
      for (int i = 0; i < 5; ++i) tasks.push_back(parked(ended));
      tasks.push_back(failing(ended));
      co_await safe_gather(std::move(tasks));
    }(ended, parked, failing));
    ADD_FAILURE() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 7);
  }
  EXPECT_EQ(ended.load(), 6) << "every task ended before the gather returned";
}

TEST(SafeGather, ReturnExceptionsOverAnInlineVectorReturnsEveryOutcome) {
  Runtime rt({.workers = 2});
  const auto r = rt.block_on([]() -> Task<weft::InlineVector<weft::Outcome<int>, 6>> {
    weft::InlineVector<Task<int>, 6> tasks;
    for (int i = 0; i < 6; ++i)
      tasks.push_back([](int i) -> Task<int> {
        if (i % 3 == 0) throw TaskError(i);
        co_return i;
      }(i));
    co_return co_await safe_gather(weft::return_exceptions, std::move(tasks));
  }());
  ASSERT_EQ(r.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    if (i % 3 == 0) {
      ASSERT_TRUE(r[i].has_exception()) << i;
      EXPECT_EQ(error_id(r[i].exception()), i);
    } else {
      ASSERT_TRUE(r[i].has_value()) << i;
      EXPECT_EQ(r[i].value(), i);
    }
  }
}

TEST(SafeGather, AnInlineVectorGatherIsAcceptedWhereverATaskIs) {
  Runtime rt({.workers = 2});
  auto make = [] {
    weft::InlineVector<Task<int>, 3> tasks;
    for (int i = 1; i <= 3; ++i) tasks.push_back(value_of(i));
    return safe_gather(std::move(tasks));
  };
  const weft::InlineVector<int, 3> direct = rt.block_on(make());
  ASSERT_EQ(direct.size(), 3u);
  EXPECT_EQ(direct[2], 3);
  const int spawned = rt.block_on([](auto make) -> Task<int> {
    std::optional<weft::JoinHandle<weft::InlineVector<int, 3>>> h;
    co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
      h.emplace(tg.spawn(make()));
      co_return;
    });
    int sum = 0;
    for (int v : h->result()) sum += v;
    co_return sum;
  }(make));
  EXPECT_EQ(spawned, 6);
}

}  // namespace

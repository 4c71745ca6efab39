// weft/safe_gather.hpp: results in argument order, fail-fast error reporting, nesting, width,
// depth, misuse (SPEC §5; sibling cancellation, return_exceptions and timeouts come later).
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::kSanitized;
using weft_test::spin_until;

using weft::Cancelled;
using weft::Future;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;
using weft::UsageError;

// The exception every failing task of these tests throws: which task threw it.
struct TaskError : std::runtime_error {
  explicit TaskError(int id) : std::runtime_error("task " + std::to_string(id)), id(id) {}
  int id;
};

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

// Three tasks on two workers, arranged so that the last one fails first in time:
//   - task 0 runs inline on the gathering worker W and holds it until task 1 has started;
//   - W's other worker steals from the top of W's deque, oldest first: task 2, then task 1.
//     Task 2 throws; only after it has ended does that worker take task 1, which throws too;
//   - task 0 throws once task 1 has started.
// So task 2's exception is the first in time, and the last in argument order.
struct FirstFailureScenario {
  std::atomic<bool> task1_started{false};
  std::atomic<int> finished{0};

  Task<int> task0() {
    CountOnExit count{finished};
    spin_until([&] { return task1_started.load(std::memory_order_acquire); });
    throw TaskError(0);
    co_return 0;
  }
  Task<int> task1() {
    CountOnExit count{finished};
    task1_started.store(true, std::memory_order_release);
    throw TaskError(1);
    co_return 1;
  }
  Task<int> task2() {
    CountOnExit count{finished};
    throw TaskError(2);
    co_return 2;
  }
};

TEST(SafeGather, TheFirstExceptionInTimeIsRethrownAsItself) {
  Runtime rt({.workers = 2});
  FirstFailureScenario s;
  struct Outcome {
    int id = -1;
    int finished_when_caught = -1;
  };
  const Outcome o = rt.block_on([](FirstFailureScenario& s) -> Task<Outcome> {
    Outcome o;
    try {
      co_await safe_gather(s.task0(), s.task1(), s.task2());
    } catch (const TaskError& e) {  // the exception's own type, not a wrapper
      o.id = e.id;
      o.finished_when_caught = s.finished.load();
    }
    co_return o;
  }(s));
  EXPECT_EQ(o.id, 2);
  EXPECT_EQ(o.finished_when_caught, 3) << "the gather returned before every task had finished";
}

TEST(SafeGather, TheFirstExceptionInTimeIsRethrownFromAVectorGather) {
  Runtime rt({.workers = 2});
  FirstFailureScenario s;
  struct Outcome {
    int id = -1;
    int finished_when_caught = -1;
  };
  const Outcome o = rt.block_on([](FirstFailureScenario& s) -> Task<Outcome> {
    Outcome o;
    std::vector<Task<int>> tasks;
    tasks.push_back(s.task0());
    tasks.push_back(s.task1());
    tasks.push_back(s.task2());
    try {
      co_await safe_gather(std::move(tasks));
    } catch (const TaskError& e) {
      o.id = e.id;
      o.finished_when_caught = s.finished.load();
    }
    co_return o;
  }(s));
  EXPECT_EQ(o.id, 2);
  EXPECT_EQ(o.finished_when_caught, 3);
}

TEST(SafeGather, OnOneWorkerTheFirstFailureIsTheFirstToRun) {
  Runtime rt({.workers = 1});
  std::atomic<int> finished{0};
  auto fail = [](std::atomic<int>& finished, int id) -> Task<int> {
    CountOnExit count{finished};
    throw TaskError(id);
    co_return id;
  };
  auto succeed = [](std::atomic<int>& finished, int id) -> Task<int> {
    CountOnExit count{finished};
    co_await busy(10);
    co_return id;
  };
  try {
    rt.block_on([](std::atomic<int>& finished, auto fail, auto succeed) -> Task<void> {
      co_await safe_gather(succeed(finished, 0), fail(finished, 1), succeed(finished, 2),
                           fail(finished, 3));
    }(finished, fail, succeed));
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 1);
  }
  EXPECT_EQ(finished.load(), 4);
}

TEST(SafeGather, AnExceptionIsRethrownOnlyAfterEveryTaskFinished) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::atomic<bool> slow_started{false};
    std::atomic<bool> thrown{false};
    std::atomic<bool> slow_finished{false};
    std::atomic<int> finished{0};
  } s;
  // Task 0 runs inline; task 1 is stolen by the other worker and is still working when task 0
  // fails.
  auto thrower = [](Shared& s) -> Task<int> {
    CountOnExit count{s.finished};
    spin_until([&] { return s.slow_started.load(std::memory_order_acquire); });
    s.thrown.store(true, std::memory_order_release);
    throw TaskError(0);
    co_return 0;
  };
  auto slow = [](Shared& s) -> Task<int> {
    CountOnExit count{s.finished};
    s.slow_started.store(true, std::memory_order_release);
    spin_until([&] { return s.thrown.load(std::memory_order_acquire); });
    co_await busy(2000);
    s.slow_finished.store(true, std::memory_order_release);
    co_return 1;
  };
  struct Seen {
    int id = -1;
    bool slow_finished = false;
    int finished = -1;
  };
  const Seen seen = rt.block_on([](Shared& s, auto thrower, auto slow) -> Task<Seen> {
    Seen seen;
    try {
      co_await safe_gather(thrower(s), slow(s), value_of(2), busy(100));
    } catch (const TaskError& e) {
      seen.id = e.id;
      seen.slow_finished = s.slow_finished.load(std::memory_order_acquire);
      seen.finished = s.finished.load();
    }
    co_return seen;
  }(s, thrower, slow));
  EXPECT_EQ(seen.id, 0);
  EXPECT_TRUE(seen.slow_finished) << "the gather returned while a task was still running";
  EXPECT_EQ(seen.finished, 2);
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

// A minimal coroutine type that is not weft's: starts eagerly on the calling thread.
struct Eager {
  struct promise_type {
    Eager get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
};

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

}  // namespace

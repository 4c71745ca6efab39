// weft/task.hpp: Task<T> — lazy start, results, move-only ownership, exceptions, misuse,
// symmetric transfer (SPEC §1).
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::spin_until;

using weft::Runtime;
using weft::Task;
using weft::UsageError;

struct Payload {
  explicit Payload(int v) : value(v) {}  // no default constructor
  int value;
};

class CodedError : public std::runtime_error {
 public:
  explicit CodedError(int code) : std::runtime_error("coded error"), code(code) {}
  int code;
};

Task<int> value_of(int v) { co_return v; }
Task<std::string> text(std::string s) { co_return s + "!"; }
Task<Payload> payload(int v) { co_return Payload(v); }
Task<std::unique_ptr<int>> boxed(int v) { co_return std::make_unique<int>(v); }

Task<void> set_flag(bool* flag) {
  *flag = true;
  co_return;
}

Task<void> hold(std::shared_ptr<int> p, bool* ran) {
  *ran = true;
  co_await value_of(*p);
}

Task<int> throw_coded(int code) {
  throw CodedError(code);
  co_return 0;
}

// Throws after it has already resumed from an await, so the exception leaves a resumed frame.
Task<int> throw_after_await(int code) {
  const int v = co_await value_of(code);
  if (v == code) throw CodedError(v);
  co_return v;
}

// ----------------------------------------------------------------------------------------------
// Static properties.

static_assert(!std::is_copy_constructible_v<Task<int>>);
static_assert(!std::is_copy_assignable_v<Task<int>>);
static_assert(std::is_nothrow_move_constructible_v<Task<int>>);
static_assert(std::is_nothrow_move_assignable_v<Task<int>>);
static_assert(std::is_nothrow_move_constructible_v<Task<>>);
static_assert(std::is_same_v<Task<>, Task<void>>);
static_assert(std::is_same_v<Task<int>::value_type, int>);

// ----------------------------------------------------------------------------------------------
// Lazy start.

TEST(Task, ATaskDestroyedWithoutBeingAwaitedNeverRunsItsBody) {
  bool ran = false;
  {
    Task<void> t = set_flag(&ran);
    EXPECT_TRUE(static_cast<bool>(t));
    EXPECT_FALSE(ran) << "creating a Task must not start it";
  }
  EXPECT_FALSE(ran) << "destroying an unstarted Task must not run it";
}

TEST(Task, DestroyingAnUnstartedTaskReleasesItsArguments) {
  auto p = std::make_shared<int>(7);
  bool ran = false;
  {
    Task<void> t = hold(p, &ran);
    EXPECT_EQ(p.use_count(), 2) << "the frame holds a copy of the argument";
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(p.use_count(), 1) << "the frame (and its copy of the argument) was freed";
}

TEST(Task, ATaskStartsOnlyWhenAwaited) {
  Runtime rt({.workers = 1});
  struct Seen {
    bool before_await = true;
    bool after_await = false;
  } seen;
  rt.block_on([](Seen& s) -> Task<void> {
    bool ran = false;
    Task<void> t = set_flag(&ran);
    s.before_await = ran;
    co_await std::move(t);
    s.after_await = ran;
  }(seen));
  EXPECT_FALSE(seen.before_await);
  EXPECT_TRUE(seen.after_await);
}

TEST(Task, ATaskCreatedInsideARunningTaskAndDroppedNeverRuns) {
  Runtime rt({.workers = 2});
  bool ran = false;
  const int v = rt.block_on([](bool* ran) -> Task<int> {
    { Task<void> dropped = set_flag(ran); }
    co_return co_await value_of(5);
  }(&ran));
  EXPECT_EQ(v, 5);
  EXPECT_FALSE(ran);
}

// ----------------------------------------------------------------------------------------------
// Results.

TEST(Task, AwaitingATaskReturnsItsValue) {
  Runtime rt({.workers = 1});
  EXPECT_EQ(rt.block_on(value_of(42)), 42);
  EXPECT_EQ(rt.block_on(text("hello")), "hello!");
}

TEST(Task, AwaitedValuesCompose) {
  Runtime rt({.workers = 1});
  const int v = rt.block_on([]() -> Task<int> {
    const int a = co_await value_of(20);
    const int b = co_await value_of(22);
    co_return a + b;
  }());
  EXPECT_EQ(v, 42);
}

TEST(Task, AVoidTaskRunsToCompletionWhenAwaited) {
  Runtime rt({.workers = 1});
  bool ran = false;
  rt.block_on(set_flag(&ran));
  EXPECT_TRUE(ran);

  bool inner = false;
  rt.block_on([](bool* flag) -> Task<void> { co_await set_flag(flag); }(&inner));
  EXPECT_TRUE(inner);
}

TEST(Task, AResultTypeWithoutADefaultConstructorWorks) {
  Runtime rt({.workers = 1});
  EXPECT_EQ(rt.block_on(payload(9)).value, 9);
}

TEST(Task, AMoveOnlyResultIsMovedOut) {
  Runtime rt({.workers = 1});
  std::unique_ptr<int> p = rt.block_on(boxed(11));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 11);

  const int v = rt.block_on([]() -> Task<int> {
    std::unique_ptr<int> q = co_await boxed(12);
    co_return *q;
  }());
  EXPECT_EQ(v, 12);
}

TEST(Task, AnAwaitedTasksFrameAndResultAreReleased) {
  Runtime rt({.workers = 1});
  auto p = std::make_shared<int>(3);
  struct Counts {
    long while_held = 0;
    long after = 0;
  };
  const Counts c = rt.block_on([](std::shared_ptr<int> p) -> Task<Counts> {
    Counts c;
    {
      // The result is moved out of the awaited task; the temporary Task (and with it the
      // frame holding its copy of the argument) is destroyed at the end of the statement.
      std::shared_ptr<int> copy = co_await [](std::shared_ptr<int> q) -> Task<std::shared_ptr<int>> {
        co_return q;
      }(p);
      c.while_held = copy.use_count();  // the test's, this frame's parameter, and `copy`
    }
    c.after = p.use_count();  // the test's and this frame's parameter
    co_return c;
  }(p));
  EXPECT_EQ(c.while_held, 3);
  EXPECT_EQ(c.after, 2);
}

// ----------------------------------------------------------------------------------------------
// Move-only ownership.

TEST(Task, AMovedFromTaskIsEmptyAndTheMovedToTaskRuns) {
  Runtime rt({.workers = 1});
  Task<int> a = value_of(3);
  Task<int> b = std::move(a);
  EXPECT_FALSE(static_cast<bool>(a));  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(static_cast<bool>(b));
  EXPECT_EQ(rt.block_on(std::move(b)), 3);
}

TEST(Task, MoveAssigningOverAnUnstartedTaskDestroysItWithoutRunningIt) {
  Runtime rt({.workers = 1});
  bool first = false;
  bool second = false;
  Task<void> t = set_flag(&first);
  t = set_flag(&second);
  EXPECT_FALSE(first);
  rt.block_on(std::move(t));
  EXPECT_FALSE(first);
  EXPECT_TRUE(second);
}

TEST(Task, ADefaultConstructedTaskIsEmpty) {
  Task<int> t;
  EXPECT_FALSE(static_cast<bool>(t));
}

// ----------------------------------------------------------------------------------------------
// Exceptions.

TEST(Task, AnExceptionPropagatesThroughCoAwait) {
  Runtime rt({.workers = 1});
  const int code = rt.block_on([]() -> Task<int> {
    try {
      co_await throw_coded(17);
    } catch (const CodedError& e) {
      co_return e.code;
    }
    co_return -1;
  }());
  EXPECT_EQ(code, 17);
}

TEST(Task, AnExceptionPropagatesThroughSeveralLevelsAndKeepsItsType) {
  Runtime rt({.workers = 1});
  auto level1 = []() -> Task<int> { co_return co_await throw_after_await(23); };
  auto level2 = [level1]() -> Task<int> { co_return 1 + co_await level1(); };
  try {
    rt.block_on([level2]() -> Task<int> { co_return co_await level2(); }());
    FAIL() << "no exception";
  } catch (const CodedError& e) {
    EXPECT_EQ(e.code, 23);
  }
}

TEST(Task, ACaughtExceptionLetsTheAwaitingTaskContinue) {
  Runtime rt({.workers = 1});
  const int v = rt.block_on([]() -> Task<int> {
    int caught = 0;
    for (int i = 0; i < 10; ++i) {
      try {
        co_await throw_coded(i);
      } catch (const CodedError& e) {
        caught += e.code;
      }
    }
    co_return caught + co_await value_of(100);
  }());
  EXPECT_EQ(v, 45 + 100);
}

TEST(Task, AnExceptionThrownOnAnotherWorkerIsRethrownInTheParent) {
  Runtime rt({.workers = 2});
  struct Shared {
    std::atomic<bool> thrower_started{false};
    std::thread::id parent_thread;
    std::thread::id thrower_thread;
  } s;
  // Runs inline on the parent's worker and holds it until the thrower has started: so the
  // thrower can only run on the other worker.
  auto hold_parent_worker = [](Shared& s) -> Task<void> {
    spin_until([&] { return s.thrower_started.load(std::memory_order_acquire); });
    co_return;
  };
  auto thrower = [](Shared& s) -> Task<int> {
    s.thrower_thread = std::this_thread::get_id();
    s.thrower_started.store(true, std::memory_order_release);
    throw CodedError(99);
    co_return 0;
  };
  // Passes the exception through a plain co_await on the thrower's worker first.
  auto relay = [thrower](Shared& s) -> Task<int> { co_return co_await thrower(s); };
  auto parent = [hold_parent_worker, relay](Shared& s) -> Task<void> {
    s.parent_thread = std::this_thread::get_id();
    co_await weft::safe_gather(hold_parent_worker(s), relay(s));
  };
  auto root = [parent](Shared& s) -> Task<int> {
    try {
      co_await parent(s);
    } catch (const CodedError& e) {
      co_return e.code;
    }
    co_return -1;
  };
  EXPECT_EQ(rt.block_on(root(s)), 99);
  EXPECT_NE(s.thrower_thread, std::thread::id());
  EXPECT_NE(s.thrower_thread, s.parent_thread) << "the thrower ran on the parent's own thread";
}

TEST(Task, AnExceptionEscapingTheRootIsRethrownByBlockOn) {
  Runtime rt({.workers = 2});
  try {
    rt.block_on(throw_after_await(5));
    FAIL() << "no exception";
  } catch (const CodedError& e) {
    EXPECT_EQ(e.code, 5);
  }
}

// ----------------------------------------------------------------------------------------------
// Misuse.

TEST(Task, AwaitingATaskTwiceThrowsUsageError) {
  Runtime rt({.workers = 1});
  struct Result {
    int first = 0;
    bool second_threw_usage_error = false;
    bool void_second_threw_usage_error = false;
  };
  const Result r = rt.block_on([]() -> Task<Result> {
    Result r;
    Task<int> t = value_of(8);
    r.first = co_await t;
    try {
      co_await t;
    } catch (const UsageError&) {
      r.second_threw_usage_error = true;
    }
    bool flag = false;
    Task<void> v = set_flag(&flag);
    co_await v;
    try {
      co_await v;
    } catch (const UsageError&) {
      r.void_second_threw_usage_error = true;
    }
    co_return r;
  }());
  EXPECT_EQ(r.first, 8);
  EXPECT_TRUE(r.second_threw_usage_error);
  EXPECT_TRUE(r.void_second_threw_usage_error);
}

TEST(Task, AwaitingAMovedFromTaskThrowsUsageError) {
  Runtime rt({.workers = 1});
  struct Result {
    bool threw_usage_error = false;
    int moved_to = 0;
  };
  const Result r = rt.block_on([]() -> Task<Result> {
    Result r;
    Task<int> a = value_of(4);
    Task<int> b = std::move(a);
    try {
      co_await a;  // NOLINT(bugprone-use-after-move)
    } catch (const UsageError&) {
      r.threw_usage_error = true;
    }
    r.moved_to = co_await b;
    co_return r;
  }());
  EXPECT_TRUE(r.threw_usage_error);
  EXPECT_EQ(r.moved_to, 4);
}

TEST(Task, AwaitingADefaultConstructedTaskThrowsUsageError) {
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on([]() -> Task<void> {
    Task<void> empty;
    co_await empty;
  }()),
               UsageError);
}

TEST(Task, BlockOnAnEmptyTaskThrowsUsageError) {
  Runtime rt({.workers = 1});
  EXPECT_THROW(rt.block_on(Task<int>()), UsageError);
}

// ----------------------------------------------------------------------------------------------
// Symmetric transfer.

// The address of this call's own stack frame: how deep the calling thread's stack is.
[[gnu::noinline]] std::uintptr_t current_stack_address() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

Task<std::uintptr_t> report_stack_address() { co_return current_stack_address(); }

struct StackSpread {
  std::uintptr_t lowest = UINTPTR_MAX;
  std::uintptr_t highest = 0;
  long awaits = 0;
};

Task<StackSpread> await_synchronous_tasks(long n) {
  StackSpread s;
  for (long i = 0; i < n; ++i) {
    const std::uintptr_t at = co_await report_stack_address();
    if (at < s.lowest) s.lowest = at;
    if (at > s.highest) s.highest = at;
    ++s.awaits;
  }
  co_return s;
}

// g++-12 makes symmetric transfer a real tail call only when optimising and not under ASan or
// TSan (see TOOLCHAIN.md); clang does in every build.
#if defined(__clang__) || \
    (defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__))
TEST(Task, AMillionSynchronouslyCompletingAwaitsDoNotGrowTheStack) {
  Runtime rt({.workers = 1});
  constexpr long kAwaits = 1'000'000;
  const StackSpread s = rt.block_on(await_synchronous_tasks(kAwaits));
  EXPECT_EQ(s.awaits, kAwaits);
  // Growing by even 32 bytes per await would spread the frames over 32 MB (and overflow the
  // worker's stack long before).
  EXPECT_LT(s.highest - s.lowest, 64u * 1024u) << "the stack grew with the number of awaits";
}
#else
TEST(Task, TenThousandSynchronouslyCompletingAwaitsComplete) {
  Runtime rt({.workers = 1});
  constexpr long kAwaits = 10'000;
  const StackSpread s = rt.block_on(await_synchronous_tasks(kAwaits));
  EXPECT_EQ(s.awaits, kAwaits);
}
#endif

TEST(Task, SynchronouslyCompletingAwaitsLeaveTheResultsIntact) {
  Runtime rt({.workers = 1});
  const long sum = rt.block_on([]() -> Task<long> {
    long total = 0;
    for (int i = 0; i < 10'000; ++i) total += co_await value_of(i);
    co_return total;
  }());
  EXPECT_EQ(sum, 10'000L * 9'999L / 2);
}

}  // namespace

// weft/runtime.hpp: Runtime, Future, default_runtime, sync_wait (SPEC §1).
#include <weft/detail/testing.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using weft_test::kSanitized;
using weft_test::spin_until;
using weft::Cancelled;
using weft::Future;
using weft::Runtime;
using weft::Task;
using weft::UsageError;

// A one-shot flag that plain threads and tasks can wait on (tasks wait by spinning, which
// holds their worker: only use it where that is the point).
class Gate {
 public:
  void open() { open_.store(true, std::memory_order_release); }
  bool is_open() const { return open_.load(std::memory_order_acquire); }
  bool wait() const {
    return spin_until([&] { return is_open(); });
  }

 private:
  std::atomic<bool> open_{false};
};

class CodedError : public std::runtime_error {
 public:
  explicit CodedError(int code) : std::runtime_error("coded error"), code(code) {}
  int code;
};

Task<int> value_of(int v) { co_return v; }

Task<int> throw_coded(int code) {
  throw CodedError(code);
  co_return 0;
}

Task<int> wait_then_return(const Gate& gate, int v) {
  gate.wait();
  co_return v;
}

Task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await weft::safe_gather(fib(n - 1), fib(n - 2));
  co_return a + b;
}

std::string current_thread_name() {
  char name[32] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

Task<std::string> thread_name_task() { co_return current_thread_name(); }

// How a task that runs until it is cancelled ended.
struct Census {
  std::atomic<int> started{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> other_ending{0};
};

// Awaits short synchronous children forever: cancellation is seen at the next await.
Task<void> run_until_cancelled(Census& c) {
  c.started.fetch_add(1, std::memory_order_acq_rel);
  try {
    for (;;) co_await value_of(1);
  } catch (const Cancelled&) {
    c.cancelled.fetch_add(1, std::memory_order_acq_rel);
    throw;
  } catch (...) {
    c.other_ending.fetch_add(1, std::memory_order_acq_rel);
    throw;
  }
}

// ----------------------------------------------------------------------------------------------
// block_on

TEST(Runtime, BlockOnReturnsTheTasksValue) {
  Runtime rt({.workers = 2});
  EXPECT_EQ(rt.block_on(value_of(42)), 42);
  EXPECT_EQ(rt.block_on(fib(15)), 610);
}

TEST(Runtime, BlockOnRethrowsTheTasksException) {
  Runtime rt({.workers = 2});
  try {
    rt.block_on(throw_coded(7));
    FAIL() << "no exception";
  } catch (const CodedError& e) {
    EXPECT_EQ(e.code, 7);
  }
  // The runtime is still usable afterwards.
  EXPECT_EQ(rt.block_on(value_of(1)), 1);
}

TEST(Runtime, BlockOnAVoidTaskReturnsOnceItEnded) {
  Runtime rt({.workers = 2});
  std::atomic<bool> ran{false};
  rt.block_on([](std::atomic<bool>& ran) -> Task<void> {
    co_await value_of(0);
    ran.store(true);
  }(ran));
  EXPECT_TRUE(ran.load());
}

TEST(Runtime, BlockOnFromOneOfItsOwnWorkersThrowsUsageError) {
  Runtime rt({.workers = 2});
  const bool threw = rt.block_on([](Runtime& rt) -> Task<bool> {
    try {
      rt.block_on(value_of(1));
    } catch (const UsageError&) {
      co_return true;
    }
    co_return false;
  }(rt));
  EXPECT_TRUE(threw);
}

TEST(Runtime, BlockOnFromOneOfItsOwnBlockingPoolThreadsThrowsUsageError) {
  // With one pool thread, held by the outer call, the inner to_thread could never run: a
  // deadlock, whenever the pool's bound is reached. Refused on every pool thread, so that it
  // does not depend on the load.
  Runtime rt({.workers = 1, .max_blocking_threads = 1});
  const bool refused = rt.block_on(weft::to_thread([&rt] {
    try {
      (void)rt.block_on(weft::to_thread([] { return 1; }));
      return false;
    } catch (const UsageError&) {
      return true;
    }
  }));
  EXPECT_TRUE(refused);
}

TEST(Runtime, DestroyingTheRuntimeFromItsTimerThreadIsReportedNotAHang) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The deadline fires on the timer thread, whose cancellation runs the callback, which
  // destroys the runtime. That used to wait for ever for the timed task, which cannot end
  // while its timer's callback runs. Before: the hang guard below ends the child with
  // exit status 3 and no message.
  EXPECT_DEATH(
      {
        auto* rt = new Runtime({.workers = 1});
        // On a loaded machine the deadline may pass before the callback is registered, which
        // then runs inline on the worker: it does nothing, the task times out, and the next
        // try has a longer budget.
        for (auto budget = std::chrono::milliseconds(1); budget < 60s; budget *= 4) {
          Future<void> f = rt->submit(weft::timeout(budget, [](Runtime* rt) -> Task<void> {
            weft::CancellationToken token = co_await weft::this_task::token();
            weft::CancellationCallback destroy(token, [rt] {
              if (!rt->on_worker_thread()) delete rt;
            });
            co_await weft::sleep_for(weft::Duration::max());
          }(rt)));
          (void)f.wait_for(60s);
        }
        std::_Exit(3);
      },
      "weft: a Runtime was destroyed from its own timer thread");
}

TEST(Runtime, DestroyingTheRuntimeFromOneOfItsOwnWorkersOrPoolThreadsIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Each would wait for its own thread to finish: a message and an abort instead of a hang.
  EXPECT_DEATH(
      {
        auto* rt = new Runtime({.workers = 1});
        (void)rt->submit([](Runtime* rt) -> Task<void> {
          delete rt;
          co_return;
        }(rt)).wait_for(60s);
        std::_Exit(3);
      },
      "weft: a Runtime was destroyed from one of its own worker threads");
  EXPECT_DEATH(
      {
        auto* rt = new Runtime({.workers = 1});
        (void)rt->submit(weft::to_thread([rt] { delete rt; })).wait_for(60s);
        std::_Exit(3);
      },
      "weft: a Runtime was destroyed by a call running on its own blocking pool");
}

TEST(Runtime, BlockOnAnotherRuntimeFromAWorkerIsAllowed) {
  Runtime outer({.workers = 1});
  Runtime inner({.workers = 1});
  const int v = outer.block_on([](Runtime& inner) -> Task<int> {
    co_return inner.block_on(value_of(5)) + 1;
  }(inner));
  EXPECT_EQ(v, 6);
}

TEST(Runtime, OnWorkerThreadIsTrueOnlyOnItsOwnWorkers) {
  Runtime rt({.workers = 1});
  Runtime other({.workers = 1});
  EXPECT_FALSE(rt.on_worker_thread());
  struct Seen {
    bool own = false;
    bool other = true;
  };
  const Seen seen = rt.block_on([](Runtime& rt, Runtime& other) -> Task<Seen> {
    co_return Seen{rt.on_worker_thread(), other.on_worker_thread()};
  }(rt, other));
  EXPECT_TRUE(seen.own);
  EXPECT_FALSE(seen.other);
}

// Records from its destructor that it was destroyed. The destructor takes a while, so that a
// caller that does not wait for the task's frame to be destroyed sees it still alive.
class SlowToDestroy {
 public:
  explicit SlowToDestroy(std::atomic<bool>* destroyed) : destroyed_(destroyed) {}
  SlowToDestroy(SlowToDestroy&& other) noexcept : destroyed_(std::exchange(other.destroyed_, nullptr)) {}
  SlowToDestroy& operator=(SlowToDestroy&&) = delete;
  ~SlowToDestroy() {
    if (destroyed_ != nullptr) {
      std::this_thread::sleep_for(50ms);
      destroyed_->store(true, std::memory_order_release);
    }
  }

 private:
  std::atomic<bool>* destroyed_;
};

// The parameter lives in the task's frame until the frame is destroyed.
Task<int> own_parameter(SlowToDestroy owned) {
  (void)owned;
  co_return 1;
}

// A task's parameters (and everything else in its frame) belong to the task: once block_on
// has returned, nothing of the task may still be running on a worker, or a parameter that
// refers to the caller's stack would be destroyed after that stack is gone.
TEST(Runtime, BlockOnReturnsOnlyAfterTheTasksFrameIsDestroyed) {
  Runtime rt({.workers = 1});
  std::atomic<bool> destroyed{false};
  EXPECT_EQ(rt.block_on(own_parameter(SlowToDestroy(&destroyed))), 1);
  EXPECT_TRUE(destroyed.load(std::memory_order_acquire))
      << "block_on returned while the task's frame was still being destroyed on a worker";
}

Task<int> own_parameter_and_throw(SlowToDestroy owned, int code) {
  (void)owned;
  throw CodedError(code);
  co_return 0;
}

// The same when the task fails: the caller handles the exception while nothing of the task runs
// any more.
TEST(Runtime, BlockOnRethrowsOnlyAfterTheTasksFrameIsDestroyed) {
  Runtime rt({.workers = 1});
  std::atomic<bool> destroyed{false};
  int code = 0;
  bool destroyed_when_caught = false;
  try {
    rt.block_on(own_parameter_and_throw(SlowToDestroy(&destroyed), 13));
  } catch (const CodedError& e) {
    code = e.code;
    destroyed_when_caught = destroyed.load(std::memory_order_acquire);
  }
  EXPECT_EQ(code, 13);
  EXPECT_TRUE(destroyed_when_caught)
      << "block_on rethrew while the task's frame was still being destroyed on a worker";
}

// The caller reads the exception in its handler while the worker finishes the root. Once the
// worker has gone back to sleep, nothing it did may race with the caller's handler. (Under TSan:
// if the worker drops the last reference to the exception after the caller has caught it, the
// free is ordered after the handler only by the reference count inside the uninstrumented
// libstdc++, and TSan reports a race. Whether the worker or the caller drops it last depends on
// timing, hence the repetitions.)
TEST(Runtime, HandlingAnExceptionFromBlockOnDoesNotRaceWithTheWorker) {
  Runtime rt({.workers = 1});
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(
        spin_until([&] { return rt.stats().workers[0].parks >= static_cast<unsigned>(i + 1); }));
    const std::uint64_t parks = rt.stats().workers[0].parks;
    int code = 0;
    try {
      rt.block_on(throw_coded(i));
    } catch (const CodedError& e) {
      code = e.code;
    }
    EXPECT_EQ(code, i);
    // Only a relaxed counter: no synchronisation with the worker that could hide a race.
    ASSERT_TRUE(spin_until([&] { return rt.stats().workers[0].parks > parks; }));
  }
}

// ----------------------------------------------------------------------------------------------
// submit / Future

TEST(Runtime, FutureGetReturnsTheValueOfASubmittedTask) {
  Runtime rt({.workers = 2});
  Future<int> f = rt.submit(value_of(9));
  EXPECT_EQ(f.get(), 9);
  Future<void> v = rt.submit([]() -> Task<void> { co_await value_of(0); }());
  v.get();
}

TEST(Runtime, FutureGetReturnsOnlyAfterTheTasksFrameIsDestroyed) {
  Runtime rt({.workers = 1});
  std::atomic<bool> destroyed{false};
  Future<int> f = rt.submit(own_parameter(SlowToDestroy(&destroyed)));
  EXPECT_EQ(f.get(), 1);
  EXPECT_TRUE(destroyed.load(std::memory_order_acquire))
      << "Future::get returned while the task's frame was still being destroyed on a worker";
}

TEST(Runtime, FutureGetRethrowsTheTasksException) {
  Runtime rt({.workers = 2});
  Future<int> f = rt.submit(throw_coded(3));
  try {
    f.get();
    FAIL() << "no exception";
  } catch (const CodedError& e) {
    EXPECT_EQ(e.code, 3);
  }
}

TEST(Runtime, FutureGetCalledTwiceThrowsUsageError) {
  Runtime rt({.workers = 1});
  Future<int> f = rt.submit(value_of(1));
  EXPECT_EQ(f.get(), 1);
  EXPECT_THROW(f.get(), UsageError);

  Future<int> g = rt.submit(throw_coded(2));
  EXPECT_THROW(g.get(), CodedError);
  EXPECT_THROW(g.get(), UsageError);
}

TEST(Runtime, FutureWaitForIsFalseUntilTheTaskEndsThenTrue) {
  Runtime rt({.workers = 1});
  Gate gate;
  Future<int> f = rt.submit(wait_then_return(gate, 12));
  EXPECT_FALSE(f.wait_for(1ms));
  EXPECT_FALSE(f.wait_for(0s));
  gate.open();
  EXPECT_TRUE(f.wait_for(std::chrono::minutes(1)));
  EXPECT_TRUE(f.wait_for(0s)) << "stays ready";
  EXPECT_EQ(f.get(), 12);
}

TEST(Runtime, FutureWaitForDurationMaxWaitsUntilTheTaskEnds) {
  // now() + Duration::max() overflows: a wait that computed it returned false at once.
  Runtime rt({.workers = 1});
  for (const weft::Duration forever : {weft::Duration::max(), weft::Duration::max() - 1h}) {
    Gate gate;
    Future<int> f = rt.submit(wait_then_return(gate, 5));
    ASSERT_FALSE(f.wait_for(0s));
    std::thread opener([&] { gate.open(); });
    EXPECT_TRUE(f.wait_for(forever)) << "wait_for returned before the task ended";
    opener.join();
    EXPECT_EQ(f.get(), 5);
  }
}

TEST(Runtime, AMovedFromFutureIsEmpty) {
  Runtime rt({.workers = 1});
  Future<int> f = rt.submit(value_of(6));
  Future<int> g = std::move(f);
  EXPECT_THROW(f.get(), UsageError);  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW(f.wait_for(0s), UsageError);
  f.cancel();  // harmless on an empty Future
  EXPECT_EQ(g.get(), 6);
}

TEST(Runtime, FutureGetOnOneOfTheRuntimesOwnWorkersThrowsUsageError) {
  Runtime rt({.workers = 2});
  const bool threw = rt.block_on([](Runtime& rt) -> Task<bool> {
    Future<int> f = rt.submit(value_of(1));
    try {
      f.get();
    } catch (const UsageError&) {
      co_return true;
    }
    co_return false;
  }(rt));
  EXPECT_TRUE(threw);
}

TEST(Runtime, SubmitFromInsideATaskRunsTheTask) {
  Runtime rt({.workers = 2});
  Future<Future<int>> outer = rt.submit([](Runtime& rt) -> Task<Future<int>> {
    co_return rt.submit(value_of(31));
  }(rt));
  Future<int> inner = outer.get();
  EXPECT_EQ(inner.get(), 31);
}

TEST(Runtime, SubmitFromInsideATaskOnASingleWorkerRuns) {
  Runtime rt({.workers = 1});
  std::atomic<int> ran{0};
  Future<int> f = rt.submit([](Runtime& rt, std::atomic<int>& ran) -> Task<int> {
    for (int i = 0; i < 10; ++i) {
      // Dropping the Future does not cancel the task.
      (void)rt.submit([](std::atomic<int>& ran) -> Task<void> {
        ran.fetch_add(1);
        co_return;
      }(ran));
    }
    co_return 0;
  }(rt, ran));
  EXPECT_EQ(f.get(), 0);
  EXPECT_TRUE(spin_until([&] { return ran.load() == 10; }));
}

TEST(Runtime, DroppingAFutureDoesNotCancelTheTask) {
  Runtime rt({.workers = 1});
  Gate gate;
  std::atomic<bool> finished{false};
  {
    Future<void> f = rt.submit([](const Gate& gate, std::atomic<bool>& finished) -> Task<void> {
      gate.wait();
      co_await value_of(0);  // an await: a cancelled task would throw here
      finished.store(true);
    }(gate, finished));
  }
  gate.open();
  EXPECT_TRUE(spin_until([&] { return finished.load(); }));
}

TEST(Runtime, SubmitFromManyThreadsConcurrently) {
  Runtime rt({.workers = 2});
  constexpr int kThreads = 8;
  const int per_thread = kSanitized ? 250 : 2000;
  std::latch start(kThreads);
  std::vector<long> sums(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Future<int>> futures;
      futures.reserve(per_thread);
      start.arrive_and_wait();
      for (int i = 0; i < per_thread; ++i) futures.push_back(rt.submit(value_of(i)));
      long sum = 0;
      for (Future<int>& f : futures) sum += f.get();
      sums[t] = sum;
    });
  }
  for (std::thread& t : threads) t.join();
  const long expected = static_cast<long>(per_thread) * (per_thread - 1) / 2;
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(sums[t], expected) << "thread " << t;
}

TEST(Runtime, BlockOnFromManyThreadsConcurrently) {
  Runtime rt({.workers = 2});
  constexpr int kThreads = 4;
  std::vector<long> results(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { results[t] = rt.block_on(fib(12 + t)); });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(results[0], 144);
  EXPECT_EQ(results[1], 233);
  EXPECT_EQ(results[2], 377);
  EXPECT_EQ(results[3], 610);
}

// ----------------------------------------------------------------------------------------------
// Cancellation through Future and ~Runtime

TEST(Runtime, FutureCancelOnARunningTaskMakesGetThrowCancelled) {
  Runtime rt({.workers = 2});
  Census c;
  Future<void> f = rt.submit(run_until_cancelled(c));
  ASSERT_TRUE(spin_until([&] { return c.started.load() == 1; }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(c.cancelled.load(), 1);
  EXPECT_EQ(c.other_ending.load(), 0);
}

TEST(Runtime, ATaskCancelledBeforeItStartsNeverRunsItsBody) {
  Runtime rt({.workers = 1});
  Gate gate;
  // Holds the only worker, so the second task cannot start before it is cancelled.
  Future<int> blocker = rt.submit(wait_then_return(gate, 1));
  std::atomic<bool> ran{false};
  Future<void> f = rt.submit([](std::atomic<bool>& ran) -> Task<void> {
    ran.store(true);
    co_return;
  }(ran));
  f.cancel();
  gate.open();
  EXPECT_EQ(blocker.get(), 1);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(ran.load());
}

TEST(Runtime, CancellingAFinishedTaskChangesNothing) {
  Runtime rt({.workers = 1});
  Future<int> f = rt.submit(value_of(4));
  ASSERT_TRUE(f.wait_for(std::chrono::minutes(1)));
  f.cancel();
  EXPECT_EQ(f.get(), 4);
}

TEST(Runtime, ACancelledTaskSeesCancelledInItsChildrenToo) {
  Runtime rt({.workers = 2});
  Census c;
  // The loop runs one level down: the child's own awaits see the root's cancellation.
  Future<int> f = rt.submit([](Census& c) -> Task<int> {
    co_await run_until_cancelled(c);
    co_return 0;
  }(c));
  ASSERT_TRUE(spin_until([&] { return c.started.load() == 1; }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(c.cancelled.load(), 1);
}

TEST(Runtime, DestroyingARuntimeCancelsRunningTasksAndWaitsForThem) {
  constexpr unsigned kWorkers = 2;
  Census c;
  std::vector<Future<void>> futures;  // outlive the runtime: they only hold the shared state
  {
    Runtime rt({.workers = kWorkers});
    for (unsigned i = 0; i < kWorkers; ++i) futures.push_back(rt.submit(run_until_cancelled(c)));
    ASSERT_TRUE(spin_until([&] { return c.started.load() == static_cast<int>(kWorkers); }));
    // Every worker is busy for good: these wait in the injection queue and are cancelled
    // before they start.
    for (int i = 0; i < 3; ++i) futures.push_back(rt.submit(run_until_cancelled(c)));
  }  // ~Runtime: cancel, wait, join
  EXPECT_EQ(c.started.load(), static_cast<int>(kWorkers));
  EXPECT_EQ(c.cancelled.load(), static_cast<int>(kWorkers));
  EXPECT_EQ(c.other_ending.load(), 0);
  for (Future<void>& f : futures) {
    EXPECT_TRUE(f.wait_for(0s)) << "a task outlived its runtime";
    EXPECT_THROW(f.get(), Cancelled);
  }
}

// Once ~Runtime has begun, a submission is refused at once: a shielded task (which starts even
// when cancelled) accepted then would keep ~Runtime waiting, and a stream of them for ever.
TEST(Runtime, SubmissionsAfterShutdownBeganAreRefusedSoShutdownIsBounded) {
  auto* rt = new Runtime({.workers = 2});
  std::atomic<bool> shutdown_began{false};
  std::atomic<bool> late_submitted{false};
  // Holds ~Runtime in its wait for the roots until the late submission has been made (so
  // that the runtime is still alive for it).
  Future<void> holder = rt->submit([](std::atomic<bool>& began,
                                      std::atomic<bool>& submitted) -> Task<void> {
    bool cancelled = false;
    try {
      co_await weft::sleep_for(weft::Duration::max());
    } catch (const Cancelled&) {
      cancelled = true;
    }
    began.store(true);
    spin_until([&] { return submitted.load(); });
    if (cancelled) throw Cancelled{};
  }(shutdown_began, late_submitted));
  ASSERT_TRUE(spin_until([&] { return rt->stats().timers_armed == 1; }));
  std::thread destroyer([rt] { delete rt; });
  ASSERT_TRUE(spin_until([&] { return shutdown_began.load(); }));
  Gate gate;
  Future<int> late = rt->submit(weft::shield(wait_then_return(gate, 1)));
  EXPECT_TRUE(late.wait_for(0s)) << "a submission made during ~Runtime was accepted";
  late_submitted.store(true);
  gate.open();  // a late task that was started anyway can end, and so can ~Runtime
  destroyer.join();
  EXPECT_THROW(late.get(), UsageError);
  EXPECT_THROW(holder.get(), Cancelled);
}

TEST(Runtime, AFutureMayOutliveItsRuntime) {
  std::optional<Future<int>> done;
  std::optional<Future<int>> failed;
  {
    Runtime rt({.workers = 1});
    done.emplace(rt.submit(value_of(17)));
    failed.emplace(rt.submit(throw_coded(18)));
    // Both ended before the runtime goes (~Runtime would cancel whatever had not started).
    ASSERT_TRUE(done->wait_for(std::chrono::minutes(1)));
    ASSERT_TRUE(failed->wait_for(std::chrono::minutes(1)));
  }
  EXPECT_TRUE(done->wait_for(0s));
  EXPECT_EQ(done->get(), 17);
  EXPECT_THROW(failed->get(), CodedError);
}

TEST(Runtime, DestroyingARuntimeWhileBlockOnCallersWaitCancelsTheirTasks) {
  Census c;
  std::atomic<int> saw_cancelled{0};
  std::vector<std::thread> callers;
  {
    Runtime rt({.workers = 2});
    for (int i = 0; i < 2; ++i) {
      callers.emplace_back([&] {
        try {
          rt.block_on(run_until_cancelled(c));
        } catch (const Cancelled&) {
          saw_cancelled.fetch_add(1);
        }
      });
    }
    // EXPECT, not ASSERT: returning here would leave the caller threads unjoined.
    EXPECT_TRUE(spin_until([&] { return c.started.load() == 2; }));
    // ~Runtime waits for both roots; each caller is woken by its root's completion, before
    // the runtime's memory goes away.
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(saw_cancelled.load(), 2);
  EXPECT_EQ(c.cancelled.load(), 2);
}

TEST(Runtime, ManyRuntimesAreCreatedAndDestroyedWithoutLeaksOrHangs) {
  const int rounds = kSanitized ? 60 : 200;
  for (int i = 0; i < rounds; ++i) {
    const unsigned workers = 1 + static_cast<unsigned>(i % 3);
    Census c;
    {
      Runtime rt({.workers = workers});
      switch (i % 4) {
        case 0:  // idle
          break;
        case 1:  // finished work
          EXPECT_EQ(rt.block_on(fib(10)), 55);
          break;
        case 2: {  // running work, cancelled by the destructor
          for (unsigned w = 0; w < workers; ++w) (void)rt.submit(run_until_cancelled(c));
          ASSERT_TRUE(spin_until([&] { return c.started.load() == static_cast<int>(workers); }));
          break;
        }
        case 3:  // queued work, possibly not started yet
          for (int k = 0; k < 20; ++k) (void)rt.submit(fib(8));
          break;
      }
    }
    EXPECT_EQ(c.cancelled.load(), c.started.load()) << "round " << i;
  }
}

// ----------------------------------------------------------------------------------------------
// Workers, thread names, stats, parking

// Threads of this process whose name starts with `prefix` (/proc/self/task/*/comm).
int threads_named(const std::string& prefix) {
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name) && name.rfind(prefix, 0) == 0) ++n;
  }
  return n;
}

TEST(Runtime, RuntimeRejectsAbsurdWorkerCounts) {
  EXPECT_THROW(Runtime({.workers = 100000, .name = "absurd"}), UsageError);
  EXPECT_THROW(Runtime({.workers = weft::kMaxWorkers + 1, .name = "absurd"}), UsageError);
  EXPECT_EQ(threads_named("absurd"), 0);
}

TEST(Runtime, AWorkerThreadTheSystemRefusesIsASystemErrorAndLeavesNothingRunning) {
  // The third worker thread fails to start, as if the system had run out of threads: before,
  // the two running threads were destroyed joinable while the constructor unwound
  // (std::terminate).
  weft::detail::testing::fail_worker_thread_start_after(2);
  try {
    Runtime rt({.workers = 4, .name = "refused"});
    ADD_FAILURE() << "the Runtime started although a worker thread could not";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::resource_unavailable_try_again);
    EXPECT_NE(std::string(e.what()).find("weft: Runtime could start only 2 of its 4 worker "
                                         "threads"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(threads_named("refused"), 0) << "a worker thread is still running";
  // The seam acted once: the next runtime starts.
  Runtime rt({.workers = 2});
  EXPECT_EQ(rt.block_on(value_of(3)), 3);
}

TEST(Runtime, WorkersHonoursTheOption) {
  for (unsigned n : {1u, 2u, 3u}) {
    Runtime rt({.workers = n});
    EXPECT_EQ(rt.workers(), n);
    EXPECT_EQ(rt.stats().workers.size(), n);
  }
}

TEST(Runtime, ZeroWorkersMeansOnePerHardwareThread) {
  Runtime rt({.workers = 0});
  const unsigned hw = std::thread::hardware_concurrency();
  EXPECT_EQ(rt.workers(), hw == 0 ? 1u : hw);
}

// Runs a two-task gather in which each task waits until the other has started: the two must
// then be on different workers. Returns the names of both threads.
Task<std::set<std::string>> names_of_two_workers() {
  struct Meet {
    std::atomic<int> arrived{0};
  };
  auto meet = [](Meet& m) -> Task<std::string> {
    m.arrived.fetch_add(1, std::memory_order_acq_rel);
    spin_until([&] { return m.arrived.load(std::memory_order_acquire) == 2; });
    co_return current_thread_name();
  };
  Meet m;
  auto [a, b] = co_await weft::safe_gather(meet(m), meet(m));
  co_return std::set<std::string>{a, b};
}

TEST(Runtime, WorkerThreadsAreNamedWeftW0AndUp) {
  Runtime rt({.workers = 2});
  EXPECT_EQ(rt.block_on(names_of_two_workers()), (std::set<std::string>{"weft-w0", "weft-w1"}));
}

TEST(Runtime, WorkerThreadNamesFollowTheRuntimeName) {
  Runtime rt({.workers = 1, .name = "pool"});
  EXPECT_EQ(rt.block_on(thread_name_task()), "pool-w0");
}

TEST(Runtime, PinnedWorkersRunTasks) {
  Runtime rt({.workers = 2, .pin_workers = true});
  EXPECT_EQ(rt.block_on(fib(12)), 144);
}

TEST(Runtime, StatsCountTasksRunAndStealsOnAWideGather) {
  Runtime rt({.workers = 2});
  const weft::WorkerStats before = rt.stats().total();
  // The first child holds its worker until another child has started: that one was stolen.
  struct Shared {
    std::thread::id first_thread;
    std::atomic<bool> first_running{false};
    std::atomic<bool> other_started{false};
  };
  auto first = [](Shared& s) -> Task<int> {
    s.first_thread = std::this_thread::get_id();
    s.first_running.store(true, std::memory_order_release);
    spin_until([&] { return s.other_started.load(std::memory_order_acquire); });
    co_return 0;
  };
  auto other = [](Shared& s, int i) -> Task<int> {
    // `first` starts at once on the gathering worker (it runs inline there), so this is short.
    spin_until([&] { return s.first_running.load(std::memory_order_acquire); });
    if (std::this_thread::get_id() != s.first_thread)
      s.other_started.store(true, std::memory_order_release);
    co_return i;
  };
  constexpr int kWidth = 64;
  Shared s;
  const long sum = rt.block_on([](Shared& s, auto first, auto other) -> Task<long> {
    std::vector<Task<int>> tasks;
    tasks.push_back(first(s));
    for (int i = 1; i < kWidth; ++i) tasks.push_back(other(s, i));
    long total = 0;
    for (int v : co_await weft::safe_gather(std::move(tasks))) total += v;
    co_return total;
  }(s, first, other));
  EXPECT_EQ(sum, kWidth * (kWidth - 1) / 2);
  const weft::RuntimeStats stats = rt.stats();
  ASSERT_EQ(stats.workers.size(), 2u);
  const weft::WorkerStats after = stats.total();
  EXPECT_GE(after.tasks_run - before.tasks_run, 2u) << "the root and at least one stolen child";
  EXPECT_GE(after.steals - before.steals, 1u);
  EXPECT_GE(after.steal_attempts - before.steal_attempts, after.steals - before.steals);
  EXPECT_GE(after.tasks_spawned - before.tasks_spawned, static_cast<std::uint64_t>(kWidth - 1));
}

TEST(Runtime, StatsTotalSumsTheWorkers) {
  weft::RuntimeStats s;
  s.workers.push_back({.tasks_run = 1, .tasks_spawned = 2, .steals = 3, .steal_attempts = 4, .parks = 5});
  s.workers.push_back({.tasks_run = 10, .tasks_spawned = 20, .steals = 30, .steal_attempts = 40, .parks = 50});
  const weft::WorkerStats t = s.total();
  EXPECT_EQ(t.tasks_run, 11u);
  EXPECT_EQ(t.tasks_spawned, 22u);
  EXPECT_EQ(t.steals, 33u);
  EXPECT_EQ(t.steal_attempts, 44u);
  EXPECT_EQ(t.parks, 55u);
}

TEST(Runtime, StatsPrintAsATableWithARowPerWorkerAndATotal) {
  weft::RuntimeStats s;
  s.workers.push_back({.tasks_run = 1, .tasks_spawned = 2, .steals = 3, .steal_attempts = 4, .parks = 5});
  s.workers.push_back({.tasks_run = 10, .tasks_spawned = 20, .steals = 30, .steal_attempts = 40, .parks = 50});
  s.frame_heap_allocations = 7;
  s.timers_armed = 9;
  const std::string table = s.to_string();
  std::vector<std::string> lines;
  for (std::size_t start = 0, end; (end = table.find('\n', start)) != std::string::npos; start = end + 1)
    lines.push_back(table.substr(start, end - start));
  ASSERT_EQ(lines.size(), 7u) << table;
  EXPECT_NE(lines[0].find("tasks_run"), std::string::npos);
  EXPECT_NE(lines[0].find("steal_attempts"), std::string::npos);
  // Every row lines up with the header.
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(lines[i].size(), lines[0].size()) << lines[i];
  EXPECT_EQ(lines[3].substr(0, 6), " total");
  EXPECT_NE(lines[3].find(" 55"), std::string::npos) << lines[3];
  EXPECT_EQ(lines[4], "frame_heap_allocations 7");
  EXPECT_EQ(lines[6], "timers_armed 9");
}

TEST(Runtime, StatsPrintAsJsonWithEveryFigure) {
  weft::RuntimeStats s;
  s.workers.push_back({.tasks_run = 1, .tasks_spawned = 2, .steals = 3, .steal_attempts = 4, .parks = 5});
  s.blocking_threads = 2;
  EXPECT_EQ(s.to_json(),
            "{\"workers\":[{\"tasks_run\":1,\"tasks_spawned\":2,\"steals\":3,\"steal_attempts\":4,"
            "\"parks\":5}],\"total\":{\"tasks_run\":1,\"tasks_spawned\":2,\"steals\":3,"
            "\"steal_attempts\":4,\"parks\":5},\"frame_heap_allocations\":0,\"blocking_threads\":2,"
            "\"timers_armed\":0}");
  Runtime rt({.workers = 3});
  const std::string live = rt.stats().to_json();
  EXPECT_EQ(std::count(live.begin(), live.end(), '{'), 3 + 2);  // 3 workers, total, the object
}

TEST(Runtime, AnIdleRuntimeParksItsWorkersAndStillRunsLaterWork) {
  Runtime rt({.workers = 2});
  // Both workers find nothing to do and go to sleep.
  ASSERT_TRUE(spin_until([&] {
    const weft::RuntimeStats s = rt.stats();
    return s.workers[0].parks >= 1 && s.workers[1].parks >= 1;
  }));
  const std::uint64_t parks = rt.stats().total().parks;
  // A submission wakes a sleeper.
  EXPECT_EQ(rt.block_on(fib(14)), 377);
  // ... and the runtime goes back to sleep once the work is done.
  ASSERT_TRUE(spin_until([&] { return rt.stats().total().parks > parks; }));
  Future<int> f = rt.submit(value_of(8));
  EXPECT_EQ(f.get(), 8);
}

// ----------------------------------------------------------------------------------------------
// default_runtime / sync_wait (WEFT_WORKERS: default_runtime_test.cpp)

TEST(Runtime, SyncWaitRunsOnTheDefaultRuntime) {
  weft::Runtime& rt = weft::default_runtime();
  EXPECT_EQ(&rt, &weft::default_runtime()) << "one process-wide runtime";
  EXPECT_GE(rt.workers(), 1u);
  EXPECT_EQ(weft::sync_wait(value_of(3)), 3);
  EXPECT_EQ(weft::sync_wait(fib(12)), 144);
  EXPECT_THROW(weft::sync_wait(throw_coded(1)), CodedError);
  const std::string name = weft::sync_wait(thread_name_task());
  EXPECT_EQ(name.rfind("weft-w", 0), 0u) << name;
}

}  // namespace

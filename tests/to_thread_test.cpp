// weft/to_thread.hpp: to_thread and the runtime's blocking pool (SPEC §9): results and
// exceptions pass through, cancellation resumes the awaiter at once while the call runs on,
// the pool grows on demand up to its bound and its idle threads retire, workers keep running
// tasks while calls block, and ~Runtime waits for running calls.
#include <weft/to_thread.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

using weft_test::Eager;
using weft_test::kSanitized;
using weft_test::spin_until;
using weft_test::TaskError;

using weft::Cancelled;
using weft::Future;
using weft::Runtime;
using weft::Task;
using weft::to_thread;
using weft::UsageError;

// A gate that blocking calls wait at, opened from the test. Waiting gives up (returning false,
// and failing the test) after a minute instead of hanging.
class Gate {
 public:
  bool pass() {
    if (gate_.try_acquire_for(60s)) return true;
    ADD_FAILURE() << "a blocking call waited at its gate for 60 s";
    return false;
  }
  void open(std::ptrdiff_t calls = 1) { gate_.release(calls); }

 private:
  std::counting_semaphore<> gate_{0};
};

std::string current_thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

// A result that counts its live copies: a dropped result must be destroyed, not leaked.
struct Counted {
  explicit Counted(std::atomic<int>& live) : live(&live) { live.fetch_add(1); }
  Counted(Counted&& o) noexcept : live(std::exchange(o.live, nullptr)) {}
  Counted& operator=(Counted&&) = delete;
  ~Counted() {
    if (live != nullptr) live->fetch_sub(1);
  }
  std::atomic<int>* live;
};

// Counts the calls run on the calling thread: a pool thread that was reused answers 2 and up.
int calls_on_this_thread() {
  thread_local int calls = 0;
  return ++calls;
}

// ----------------------------------------------------------------------------------------------
// Results

TEST(ToThread, ReturnsTheResultOfTheCallRunOnABlockingThreadNamedAfterTheRuntime) {
  Runtime rt({.workers = 1, .name = "tt"});
  std::string name;
  const int answer = rt.block_on([](std::string& name) -> Task<int> {
    co_return co_await to_thread([&name] {
      name = current_thread_name();
      return 42;
    });
  }(name));
  EXPECT_EQ(answer, 42);
  EXPECT_EQ(name, "tt-blk");
}

TEST(ToThread, AnExceptionFromTheCallPropagatesToTheAwaiter) {
  Runtime rt({.workers = 1});
  const int id = rt.block_on([]() -> Task<int> {
    try {
      co_await to_thread([]() -> int { throw TaskError(5); });
    } catch (const TaskError& e) {
      co_return e.id;
    }
    co_return -1;
  }());
  EXPECT_EQ(id, 5);
  EXPECT_THROW(rt.block_on(to_thread([] { throw TaskError(6); })), TaskError);
}

TEST(ToThread, AVoidCallRunsAndReturns) {
  Runtime rt({.workers = 1});
  std::atomic<bool> ran{false};
  rt.block_on(to_thread([&ran] { ran.store(true); }));
  EXPECT_TRUE(ran.load());
}

TEST(ToThread, AMoveOnlyResultIsMovedToTheAwaiter) {
  Runtime rt({.workers = 1});
  std::unique_ptr<int> p = rt.block_on(to_thread([] { return std::make_unique<int>(7); }));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(ToThread, AMoveOnlyCallableIsAccepted) {
  Runtime rt({.workers = 1});
  auto owned = std::make_unique<int>(9);
  const int v = rt.block_on(to_thread([owned = std::move(owned)] { return *owned; }));
  EXPECT_EQ(v, 9);
}

TEST(ToThread, ManyCallsAtOnceAllCompleteWithinTheBound) {
  constexpr int kCalls = 200;
  Runtime rt({.workers = 2, .max_blocking_threads = 4});
  std::atomic<int> running{0};
  std::atomic<int> most_running{0};
  const long sum = rt.block_on([](std::atomic<int>& running,
                                  std::atomic<int>& most_running) -> Task<long> {
    std::vector<Task<int>> calls;
    for (int i = 0; i < kCalls; ++i)
      calls.push_back(to_thread([i, &running, &most_running] {
        const int now = running.fetch_add(1) + 1;
        int seen = most_running.load();
        while (now > seen && !most_running.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(100us);
        running.fetch_sub(1);
        return i;
      }));
    const std::vector<int> values = co_await weft::safe_gather(std::move(calls));
    long sum = 0;
    for (int v : values) sum += v;
    co_return sum;
  }(running, most_running));
  EXPECT_EQ(sum, long{kCalls} * (kCalls - 1) / 2);
  EXPECT_LE(most_running.load(), 4);
  EXPECT_LE(rt.stats().blocking_threads, 4u);
}

// ----------------------------------------------------------------------------------------------
// Cancellation

TEST(ToThread, AnAlreadyCancelledTaskDoesNotSubmitTheCall) {
  Runtime rt({.workers = 1});
  std::atomic<bool> started{false};
  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> ran{false};
  Future<void> f = rt.submit([](std::atomic<bool>& started, std::atomic<bool>& cancel_requested,
                                std::atomic<bool>& ran) -> Task<void> {
    started.store(true);
    spin_until([&] { return cancel_requested.load(); });
    co_await to_thread([&ran] { ran.store(true); });
  }(started, cancel_requested, ran));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(ran.load());
  EXPECT_EQ(rt.stats().blocking_threads, 0u) << "a pool thread was started for nothing";
}

TEST(ToThread, CancellingTheAwaiterResumesItAtOnceWhileTheCallRunsOnAndItsResultIsDropped) {
  Runtime rt({.workers = 2});
  Gate gate;
  std::atomic<bool> call_started{false};
  std::atomic<bool> call_finished{false};
  std::atomic<int> live_results{0};
  Future<int> f = rt.submit([](Gate& gate, std::atomic<bool>& call_started,
                               std::atomic<bool>& call_finished,
                               std::atomic<int>& live_results) -> Task<int> {
    Counted c = co_await to_thread([&] {
      call_started.store(true);
      gate.pass();
      call_finished.store(true);
      return Counted(live_results);
    });
    co_return c.live != nullptr ? 1 : 0;
  }(gate, call_started, call_finished, live_results));
  ASSERT_TRUE(spin_until([&] { return call_started.load(); }));
  f.cancel();
  ASSERT_TRUE(f.wait_for(60s)) << "the cancellation did not resume the awaiter";
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(call_finished.load()) << "the awaiter waited for the call";
  gate.open();
  ASSERT_TRUE(spin_until([&] { return call_finished.load(); }));
  // The dropped result is destroyed with the call's state, on the pool thread.
  EXPECT_TRUE(spin_until([&] { return live_results.load() == 0; }));
}

TEST(ToThread, AQueuedCallWhoseAwaiterWasCancelledNeverRuns) {
  Runtime rt({.workers = 1, .max_blocking_threads = 1});
  Gate gate;
  std::atomic<bool> first_started{false};
  std::atomic<bool> second_arrived{false};
  std::atomic<bool> second_ran{false};
  Future<void> first = rt.submit(to_thread([&] {
    first_started.store(true);
    gate.pass();
  }));
  ASSERT_TRUE(spin_until([&] { return first_started.load(); }));
  Future<void> second = rt.submit([](std::atomic<bool>& arrived,
                                     std::atomic<bool>& ran) -> Task<void> {
    arrived.store(true);
    co_await to_thread([&ran] { ran.store(true); });
  }(second_arrived, second_ran));
  ASSERT_TRUE(spin_until([&] { return second_arrived.load(); }));
  // Lets the call get queued behind the first (only makes that path likelier: a call cancelled
  // before it was submitted must not run either).
  std::this_thread::sleep_for(2ms);
  second.cancel();
  EXPECT_THROW(second.get(), Cancelled);
  gate.open();
  first.get();
  // FIFO: once a later call has run, the pool's only thread has passed the second one.
  rt.block_on(to_thread([] {}));
  EXPECT_FALSE(second_ran.load()) << "the call of a cancelled awaiter ran";
}

// The completion on a pool thread races the cancellation from another thread: every awaiter
// ends exactly once, and every result is destroyed whoever wins.
TEST(ToThread, CancellationRacingCompletionEndsEveryAwaiterOnceAndDropsNoResultUndestroyed) {
  const int rounds = kSanitized ? 100 : 400;
  constexpr int kCalls = 8;
  Runtime rt({.workers = 2, .max_blocking_threads = 4});
  std::atomic<int> live_results{0};
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> returned{0};
    std::vector<Future<void>> fs;
    for (int i = 0; i < kCalls; ++i)
      fs.push_back(rt.submit([](std::atomic<int>& live, std::atomic<int>& returned,
                                int spins) -> Task<void> {
        Counted c = co_await to_thread([&live, spins] {
          // A busy wait the compiler keeps (the fence is a compiler barrier).
          for (int s = 0; s < spins; ++s) std::atomic_signal_fence(std::memory_order_seq_cst);
          return Counted(live);
        });
        returned.fetch_add(1);
      }(live_results, returned, (round % 16) * 200)));
    std::this_thread::sleep_for(std::chrono::microseconds(round % 50));
    for (auto& f : fs) f.cancel();
    int normal = 0;
    int cancelled = 0;
    for (auto& f : fs) {
      try {
        f.get();
        ++normal;
      } catch (const Cancelled&) {
        ++cancelled;
      }
    }
    EXPECT_EQ(normal + cancelled, kCalls) << "round " << round;
    EXPECT_EQ(normal, returned.load()) << "round " << round;
    if (HasFailure()) break;
  }
  EXPECT_TRUE(spin_until([&] { return live_results.load() == 0; }));
}

// ----------------------------------------------------------------------------------------------
// The pool

TEST(ToThread, ThePoolGrowsUpToItsBoundAndFurtherCallsWaitInLine) {
  Runtime rt({.workers = 1, .max_blocking_threads = 2});
  Gate gate;
  std::atomic<int> started{0};
  std::vector<Future<void>> calls;
  for (int i = 0; i < 3; ++i)
    calls.push_back(rt.submit(to_thread([&] {
      started.fetch_add(1);
      gate.pass();
    })));
  ASSERT_TRUE(spin_until([&] { return started.load() == 2; }));
  std::this_thread::sleep_for(20ms);  // room for a wrong third start to show; not a timing bound
  EXPECT_EQ(started.load(), 2) << "a third call started beyond the bound of 2";
  EXPECT_EQ(rt.stats().blocking_threads, 2u);
  gate.open();  // one call ends; its thread takes the third
  ASSERT_TRUE(spin_until([&] { return started.load() == 3; }));
  EXPECT_EQ(rt.stats().blocking_threads, 2u);
  gate.open(2);
  for (auto& f : calls) f.get();
}

TEST(ToThread, IdleThreadsRetireAfterTheKeepAliveAndThePoolGrowsAgain) {
  Runtime rt({.workers = 1, .blocking_keep_alive = 20ms});
  rt.block_on(to_thread([] {}));
  ASSERT_TRUE(spin_until([&] { return rt.stats().blocking_threads == 0; }))
      << "an idle blocking thread did not retire";
  EXPECT_EQ(rt.block_on(to_thread([] { return 3; })), 3);
}

TEST(ToThread, WithTheDefaultKeepAliveAFinishedCallLeavesItsThreadIdleForTheNext) {
  Runtime rt({.workers = 1});
  rt.block_on(to_thread([] {}));
  EXPECT_EQ(rt.stats().blocking_threads, 1u) << "the thread retired within 10 s";
}

TEST(ToThread, AKeepAliveOfDurationMaxNeverRetiresTheThread) {
  // now() + Duration::max() overflows: a pool that computed it retired its thread at once.
  // One thread at most, so the second call runs on the first call's thread unless it retired.
  Runtime rt({.workers = 1, .max_blocking_threads = 1, .blocking_keep_alive = weft::Duration::max()});
  EXPECT_EQ(rt.block_on(to_thread([] { return calls_on_this_thread(); })), 1);
  EXPECT_EQ(rt.block_on(to_thread([] { return calls_on_this_thread(); })), 2)
      << "the idle thread retired instead of waiting for the next call";
  EXPECT_EQ(rt.stats().blocking_threads, 1u);
}

// The blocking call waits for something only another task on the single worker can do: if
// to_thread blocked the worker, this would deadlock (the gate gives up after a minute).
TEST(ToThread, AOneWorkerRuntimeKeepsRunningOtherTasksWhileACallBlocks) {
  Runtime rt({.workers = 1});
  Gate gate;
  std::atomic<int> ticks{0};
  const bool passed = rt.block_on([](Gate& gate, std::atomic<int>& ticks) -> Task<bool> {
    auto results = co_await weft::safe_gather(
        to_thread([&gate] { return gate.pass(); }),
        [](Gate& gate, std::atomic<int>& ticks) -> Task<void> {
          for (int i = 0; i < 100; ++i) {
            ticks.fetch_add(1);
            co_await weft::this_task::yield();
          }
          gate.open();
        }(gate, ticks));
    co_return std::get<0>(results);
  }(gate, ticks));
  EXPECT_TRUE(passed);
  EXPECT_EQ(ticks.load(), 100);
}

TEST(ToThread, RuntimeDestructionWaitsForRunningCallsToReturn) {
  std::atomic<bool> call_started{false};
  std::atomic<bool> call_finished{false};
  std::atomic<bool> awaiter_cancelled{false};
  {
    Runtime rt({.workers = 1});
    Future<void> f = rt.submit([](std::atomic<bool>& started, std::atomic<bool>& finished,
                                  std::atomic<bool>& awaiter_cancelled) -> Task<void> {
      try {
        co_await to_thread([&] {
          started.store(true);
          std::this_thread::sleep_for(50ms);
          finished.store(true);
        });
      } catch (const Cancelled&) {
        awaiter_cancelled.store(true);
        throw;
      }
    }(call_started, call_finished, awaiter_cancelled));
    ASSERT_TRUE(spin_until([&] { return call_started.load(); }));
  }  // ~Runtime cancels the task (which resumes at once), then waits for the call
  EXPECT_TRUE(awaiter_cancelled.load());
  EXPECT_TRUE(call_finished.load()) << "~Runtime returned while a blocking call was running";
}

// ----------------------------------------------------------------------------------------------
// Misuse

TEST(ToThread, AwaitingOutsideARuntimeThrowsUsageError) {
  std::atomic<bool> threw{false};
  std::atomic<bool> ran{false};
  [](std::atomic<bool>& threw, std::atomic<bool>& ran) -> Eager {
    try {
      co_await to_thread([&ran] { ran.store(true); });
    } catch (const UsageError&) {
      threw.store(true);
    }
  }(threw, ran);
  EXPECT_TRUE(threw.load());
  EXPECT_FALSE(ran.load());
}

TEST(ToThread, ARuntimeWithoutBlockingThreadsIsAUsageError) {
  EXPECT_THROW(Runtime({.workers = 1, .max_blocking_threads = 0}), UsageError);
}

// ----------------------------------------------------------------------------------------------
// Arguments, the token, deadlines (SPEC r2 §9)

int add_three(int a, int b, int c) { return a + b + c; }

TEST(ToThread, ForwardsItsArgumentsToTheCallIncludingMoveOnlyOnesAndReferencesByStdRef) {
  Runtime rt({.workers = 1});
  EXPECT_EQ(rt.block_on(to_thread(&add_three, 1, 2, 3)), 6);
  auto owned = std::make_unique<int>(41);
  EXPECT_EQ(rt.block_on(to_thread([](std::unique_ptr<int> p, int k) { return *p + k; },
                                  std::move(owned), 1)),
            42);
  int shared = 0;
  rt.block_on(to_thread([](int& target, int v) { target = v; }, std::ref(shared), 7));
  EXPECT_EQ(shared, 7) << "std::ref did not reach the call";
  std::string copied = "abc";
  EXPECT_EQ(rt.block_on(to_thread([](std::string s) { return s.size(); }, copied)), 3u);
  EXPECT_EQ(copied, "abc") << "an lvalue argument was moved from, not copied";
}

TEST(ToThread, ACallThatTakesACancellationTokenFirstGetsItWithItsArguments) {
  Runtime rt({.workers = 1});
  const int got = rt.block_on(to_thread(
      [](weft::CancellationToken token, int a, int b) {
        return token.is_cancelled() ? -1 : a * b;
      },
      6, 7));
  EXPECT_EQ(got, 42);
}

TEST(ToThread, TheTokenOfACallIsCancelledWhenItsAwaiterIsSoTheCallCanStopEarly) {
  Runtime rt({.workers = 1});
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancel{false};
  std::atomic<bool> returned{false};
  Future<void> f = rt.submit(to_thread([&](weft::CancellationToken token) {
    started.store(true);
    spin_until([&] { return token.is_cancelled(); });
    saw_cancel.store(token.is_cancelled());
    returned.store(true);
  }));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  ASSERT_TRUE(spin_until([&] { return returned.load(); })) << "the call never saw its token";
  EXPECT_TRUE(saw_cancel.load());
}

TEST(ToThread, AQueuedCallWhoseAwaitersDeadlinePassesNeverStarts) {
  Runtime rt({.workers = 1, .max_blocking_threads = 1});
  Gate gate;
  std::atomic<bool> first_started{false};
  std::atomic<bool> second_ran{false};
  Future<void> first = rt.submit(to_thread([&] {
    first_started.store(true);
    gate.pass();
  }));
  ASSERT_TRUE(spin_until([&] { return first_started.load(); }));
  // Queued behind the first call (the pool's only thread) until its deadline has passed.
  EXPECT_THROW(rt.block_on(weft::timeout(1ms, to_thread([&second_ran](int) {
                 second_ran.store(true);
               }, 1))),
               weft::TimeoutError);
  gate.open();
  first.get();
  // FIFO: once a later call has run, the pool's only thread has passed the second one.
  rt.block_on(to_thread([] {}));
  EXPECT_FALSE(second_ran.load()) << "a call started after its awaiter's deadline";
}

}  // namespace

// weft/cancellation.hpp and how tasks are cancelled (SPEC §3): sources, tokens and callbacks,
// parent-linked sources, with_cancellation, shield, Future::cancel, tasks cancelled before they
// start, level-triggered delivery, and the report of a swallowed cancellation.
#include <weft/detail/cancel_state.hpp>
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "test_support.hpp"

// The heap in use, for the test that a long-lived parent does not accumulate its dead children:
// the sanitizers' allocator statistics in sanitized builds (whose runtimes own operator new),
// else a count of live blocks kept by replacing the global operator new and delete (the array
// and nothrow forms forward to these).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_TEST_SANITIZED_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WEFT_TEST_SANITIZED_HEAP 1
#endif
#endif

#ifdef WEFT_TEST_SANITIZED_HEAP
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
static long heap_in_use() { return static_cast<long>(__sanitizer_get_current_allocated_bytes()); }
#else
static std::atomic<long> g_live_allocations{0};
static long heap_in_use() { return g_live_allocations.load(); }

// g++ takes the malloc/free pair below, once inlined into new/delete expressions, for a mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t bytes) {
  void* p = std::malloc(bytes != 0 ? bytes : 1);
  if (p == nullptr) throw std::bad_alloc();
  g_live_allocations.fetch_add(1, std::memory_order_relaxed);
  return p;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  g_live_allocations.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

namespace {

using weft_test::TaskError;
using weft_test::HangGuard;

using namespace std::chrono_literals;

using weft_test::kSanitized;
using weft_test::spin_until;

using weft::Cancelled;
using weft::CancellationCallback;
using weft::CancellationSource;
using weft::CancellationToken;
using weft::Future;
using weft::Runtime;
using weft::safe_gather;
using weft::Task;



Task<int> value_of(int v) { co_return v; }

Task<void> set_flag(std::atomic<bool>& flag) {
  flag.store(true);
  co_return;
}

// Marks `started`, then works (yielding) until cancelled; records that it saw Cancelled.
Task<void> work_until_cancelled(std::atomic<bool>& started, std::atomic<bool>& saw_cancelled) {
  started.store(true);
  try {
    HangGuard guard;
    while (!guard.expired()) co_await weft::this_task::yield();
  } catch (const Cancelled&) {
    saw_cancelled.store(true);
    throw;
  }
}

// Records the swallowed-cancellation reports while installed.
std::atomic<int> g_swallowed{0};
std::mutex g_swallowed_mutex;
std::string g_swallowed_description;  // guarded by g_swallowed_mutex

void record_swallowed(std::string_view task) {
  {
    std::lock_guard<std::mutex> lock(g_swallowed_mutex);
    g_swallowed_description = std::string(task);
  }
  g_swallowed.fetch_add(1);
}

struct SwallowedCancellationRecorder {
  SwallowedCancellationRecorder() {
    g_swallowed.store(0);
    weft::set_swallowed_cancellation_handler(&record_swallowed);
  }
  ~SwallowedCancellationRecorder() { weft::set_swallowed_cancellation_handler(nullptr); }
  int count() const { return g_swallowed.load(); }
  std::string description() const {
    std::lock_guard<std::mutex> lock(g_swallowed_mutex);
    return g_swallowed_description;
  }
};

// ----------------------------------------------------------------------------------------------
// Sources and tokens

TEST(Cancellation, ADefaultTokenCanNeverBeCancelled) {
  const CancellationToken t;
  EXPECT_FALSE(t.can_be_cancelled());
  EXPECT_FALSE(t.is_cancelled());
  const CancellationToken copy = t;
  EXPECT_FALSE(copy.can_be_cancelled());
  bool ran = false;
  { CancellationCallback cb(t, [&] { ran = true; }); }
  EXPECT_FALSE(ran);
}

TEST(Cancellation, ASourceCancelsItsTokensAndOnlyTheFirstCancelReportsTrue) {
  CancellationSource s;
  const CancellationToken t = s.token();
  EXPECT_TRUE(t.can_be_cancelled());
  EXPECT_FALSE(t.is_cancelled());
  EXPECT_FALSE(s.is_cancelled());
  EXPECT_TRUE(s.cancel());
  EXPECT_TRUE(s.is_cancelled());
  EXPECT_TRUE(t.is_cancelled());
  EXPECT_TRUE(s.token().is_cancelled()) << "a token taken after the cancellation";
  EXPECT_FALSE(s.cancel());
  EXPECT_TRUE(s.is_cancelled());
}

TEST(Cancellation, CopiesOfASourceShareOneState) {
  CancellationSource a;
  CancellationSource b = a;
  CancellationSource c;
  c = a;
  const CancellationToken t = a.token();
  EXPECT_TRUE(c.cancel());
  EXPECT_TRUE(a.is_cancelled());
  EXPECT_TRUE(b.is_cancelled());
  EXPECT_TRUE(t.is_cancelled());
  EXPECT_FALSE(b.cancel());
}

TEST(Cancellation, TokensAndCallbacksOutliveTheSourceTheyCameFrom) {
  auto source = std::make_unique<CancellationSource>();
  const CancellationToken never = source->token();
  CancellationSource keeper = *source;
  const CancellationToken later = keeper.token();
  bool ran = false;
  CancellationCallback cb(later, [&] { ran = true; });
  source.reset();
  EXPECT_FALSE(never.is_cancelled());
  EXPECT_TRUE(never.can_be_cancelled());
  keeper.cancel();
  EXPECT_TRUE(ran);
  EXPECT_TRUE(never.is_cancelled()) << "both tokens share the state that `keeper` cancelled";
}

TEST(Cancellation, ACancelFromAnotherThreadIsSeenByTokensAndRunsTheCallbackThereOnce) {
  CancellationSource s;
  const CancellationToken t = s.token();
  std::atomic<int> runs{0};
  std::thread::id ran_on;
  CancellationCallback cb(t, [&] {
    ran_on = std::this_thread::get_id();
    runs.fetch_add(1);
  });
  std::atomic<bool> observer_saw{false};
  std::thread observer([&] { observer_saw.store(spin_until([&] { return t.is_cancelled(); })); });
  std::thread::id canceller_id;
  std::thread canceller([&] {
    canceller_id = std::this_thread::get_id();
    EXPECT_TRUE(s.cancel());
  });
  canceller.join();
  observer.join();
  EXPECT_TRUE(observer_saw.load());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(ran_on, canceller_id) << "callbacks run on the cancelling thread";
  EXPECT_TRUE(t.is_cancelled());
}

TEST(Cancellation, ConcurrentCancelsRunEveryCallbackExactlyOnceAndOnlyOneReportsTrue) {
  const int rounds = kSanitized ? 50 : 500;
  constexpr int kThreads = 4;
  for (int round = 0; round < rounds; ++round) {
    CancellationSource s;
    std::atomic<int> runs[3] = {0, 0, 0};
    CancellationCallback a(s.token(), [&] { runs[0].fetch_add(1); });
    CancellationCallback b(s.token(), [&] { runs[1].fetch_add(1); });
    CancellationCallback c(s.token(), [&] { runs[2].fetch_add(1); });
    std::atomic<int> ready{0};
    std::atomic<int> won{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        if (s.cancel()) won.fetch_add(1);
      });
    for (auto& th : threads) th.join();
    ASSERT_EQ(won.load(), 1) << "round " << round;
    for (auto& r : runs) ASSERT_EQ(r.load(), 1) << "round " << round;
  }
}

// Callbacks registered (on the parent, and on children of it) while another thread cancels the
// parent: each runs exactly once, either inline in its constructor or from the cancel.
TEST(Cancellation, CallbacksRegisteredWhileTheParentIsCancelledRunExactlyOnce) {
  const int rounds = kSanitized ? 20 : 200;
  constexpr int kPerThread = 50;
  for (int round = 0; round < rounds; ++round) {
    CancellationSource parent;
    std::atomic<int> runs{0};
    std::atomic<int> ready{0};
    struct Registration {
      std::optional<CancellationSource> child;
      std::optional<CancellationCallback> callback;
    };
    std::vector<Registration> regs[2];
    for (auto& r : regs) r = std::vector<Registration>(kPerThread);
    auto registrar = [&](std::vector<Registration>& mine, bool on_children) {
      ready.fetch_add(1);
      while (ready.load() < 3) std::this_thread::yield();
      for (Registration& r : mine) {
        if (on_children) {
          r.child.emplace(parent.token());
          r.callback.emplace(r.child->token(), [&] { runs.fetch_add(1); });
        } else {
          r.callback.emplace(parent.token(), [&] { runs.fetch_add(1); });
        }
      }
    };
    std::thread t0(registrar, std::ref(regs[0]), true);
    std::thread t1(registrar, std::ref(regs[1]), false);
    ready.fetch_add(1);
    while (ready.load() < 3) std::this_thread::yield();
    parent.cancel();
    t0.join();
    t1.join();
    ASSERT_EQ(runs.load(), 2 * kPerThread) << "round " << round;
    for (auto& mine : regs)
      for (Registration& r : mine)
        if (r.child) {
          ASSERT_TRUE(r.child->is_cancelled());
        }
  }
}

// ----------------------------------------------------------------------------------------------
// Callbacks

TEST(Cancellation, ACallbackRegisteredAfterCancellationRunsInlineInItsConstructor) {
  CancellationSource s;
  s.cancel();
  std::thread::id ran_on;
  int runs = 0;
  CancellationCallback cb(s.token(), [&] {
    ran_on = std::this_thread::get_id();
    ++runs;
  });
  EXPECT_EQ(runs, 1) << "not run by the time the constructor returned";
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  s.cancel();
  EXPECT_EQ(runs, 1);
}

TEST(Cancellation, ACallbackThatThrowsStopsTheProcessWithAMessageNamingTheException) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Run by cancel() on the cancelling thread, where nothing could catch it.
  EXPECT_DEATH(
      {
        CancellationSource s;
        CancellationCallback cb(s.token(), [] { throw std::runtime_error("disk on fire"); });
        s.cancel();
      },
      "weft: a CancellationCallback's function threw \\(disk on fire\\)");
  // Run inline by the constructor of a callback on a token already cancelled.
  EXPECT_DEATH(
      {
        CancellationSource s;
        s.cancel();
        CancellationCallback cb(s.token(), [] { throw 42; });
      },
      "weft: a CancellationCallback's function threw \\(an exception that is not a "
      "std::exception\\)");
}

TEST(Cancellation, ACallbackDestroyedBeforeTheCancellationNeverRuns) {
  CancellationSource s;
  int first = 0;
  int second = 0;
  int third = 0;
  CancellationCallback a(s.token(), [&] { ++first; });
  std::optional<CancellationCallback> b(std::in_place, s.token(), [&] { ++second; });
  CancellationCallback c(s.token(), [&] { ++third; });
  b.reset();
  s.cancel();
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 0);
  EXPECT_EQ(third, 1);
}

TEST(Cancellation, DestroyingACallbackWhileItRunsOnAnotherThreadWaitsForIt) {
  CancellationSource s;
  // Something the callback uses that dies right after the callback object (ASan catches a
  // destructor that returns early).
  auto resource = std::make_unique<int>(0);
  std::atomic<bool> entered{false};
  std::atomic<bool> destructor_started{false};
  std::atomic<bool> returned{false};
  auto cb = std::make_unique<CancellationCallback>(s.token(), [&, r = resource.get()] {
    entered.store(true);
    spin_until([&] { return destructor_started.load(); });
    // Give the destructor time to reach its wait: if it did not wait it returns meanwhile.
    std::this_thread::sleep_for(20ms);
    *r = 42;
    returned.store(true);
  });
  std::thread canceller([&] { s.cancel(); });
  ASSERT_TRUE(spin_until([&] { return entered.load(); }));
  destructor_started.store(true);
  cb.reset();
  EXPECT_TRUE(returned.load()) << "the destructor returned while the callback still ran";
  EXPECT_EQ(*resource, 42);
  resource.reset();
  canceller.join();
}

TEST(Cancellation, ACallbackMayDestroyItselfWhileItRuns) {
  for (bool other_thread : {false, true}) {
    SCOPED_TRACE(other_thread ? "cancelled on another thread" : "cancelled on this thread");
    CancellationSource s;
    std::optional<CancellationCallback> cb;
    std::atomic<int> runs{0};
    cb.emplace(s.token(), [&cb, &runs] {
      runs.fetch_add(1);
      cb.reset();  // the lambda is gone after this: touch nothing of it
    });
    if (other_thread) {
      std::thread([&] { s.cancel(); }).join();
    } else {
      s.cancel();
    }
    EXPECT_EQ(runs.load(), 1);
    EXPECT_FALSE(cb.has_value());
  }
}

TEST(Cancellation, OfTwoCallbacksThatDestroyEachOtherExactlyOneRuns) {
  CancellationSource s;
  std::optional<CancellationCallback> a;
  std::optional<CancellationCallback> b;
  int runs = 0;
  a.emplace(s.token(), [&] {
    ++runs;
    b.reset();
  });
  b.emplace(s.token(), [&] {
    ++runs;
    a.reset();
  });
  s.cancel();
  EXPECT_EQ(runs, 1);
  EXPECT_NE(a.has_value(), b.has_value());
}

TEST(Cancellation, ACallbackMayRegisterCallbacksAndCancelSourcesWithoutDeadlock) {
  CancellationSource s;
  CancellationSource other;
  std::optional<CancellationCallback> inner;
  bool inner_ran_inline = false;
  bool other_ran = false;
  CancellationCallback on_other(other.token(), [&] { other_ran = true; });
  CancellationCallback outer(s.token(), [&] {
    bool inner_ran = false;
    inner.emplace(s.token(), [&inner_ran] { inner_ran = true; });  // already cancelled: inline
    inner_ran_inline = inner_ran;
    EXPECT_FALSE(s.cancel()) << "its own source, again";
    EXPECT_TRUE(other.cancel());
  });
  s.cancel();
  EXPECT_TRUE(inner_ran_inline);
  EXPECT_TRUE(other_ran);
}

// ----------------------------------------------------------------------------------------------
// Parent-linked sources

TEST(Cancellation, CancellingAParentCancelsItsChildrenAndGrandchildrenAndRunsTheirCallbacks) {
  CancellationSource parent;
  CancellationSource child(parent.token());
  CancellationSource grandchild(child.token());
  CancellationSource unrelated;
  int runs = 0;
  CancellationCallback on_child(child.token(), [&] { ++runs; });
  CancellationCallback on_grandchild(grandchild.token(), [&] { ++runs; });
  std::thread([&] { parent.cancel(); }).join();
  EXPECT_TRUE(child.is_cancelled());
  EXPECT_TRUE(grandchild.is_cancelled());
  EXPECT_TRUE(grandchild.token().is_cancelled());
  EXPECT_FALSE(unrelated.is_cancelled());
  EXPECT_EQ(runs, 2);
  EXPECT_FALSE(child.cancel()) << "already cancelled through its parent";
}

TEST(Cancellation, AChildWithoutCallbacksSeesItsParentsCancellationToo) {
  CancellationSource parent;
  CancellationSource child(parent.token());
  CancellationSource grandchild(child.token());
  const CancellationToken t = grandchild.token();
  EXPECT_FALSE(t.is_cancelled());
  parent.cancel();
  EXPECT_TRUE(t.is_cancelled());
}

TEST(Cancellation, CancellingAChildLeavesItsParentAndSiblingsAlone) {
  CancellationSource parent;
  CancellationSource a(parent.token());
  CancellationSource b(parent.token());
  int parent_runs = 0;
  int b_runs = 0;
  CancellationCallback on_parent(parent.token(), [&] { ++parent_runs; });
  CancellationCallback on_b(b.token(), [&] { ++b_runs; });
  EXPECT_TRUE(a.cancel());
  EXPECT_TRUE(a.is_cancelled());
  EXPECT_FALSE(parent.is_cancelled());
  EXPECT_FALSE(b.is_cancelled());
  EXPECT_EQ(parent_runs, 0);
  EXPECT_EQ(b_runs, 0);
}

TEST(Cancellation, AChildOfAnAlreadyCancelledParentIsBornCancelled) {
  CancellationSource parent;
  parent.cancel();
  CancellationSource child(parent.token());
  EXPECT_TRUE(child.is_cancelled());
  EXPECT_TRUE(child.token().is_cancelled());
  int runs = 0;
  CancellationCallback cb(child.token(), [&] { ++runs; });
  EXPECT_EQ(runs, 1) << "the callback should have run inline";
  CancellationSource grandchild(child.token());
  CancellationCallback cb2(grandchild.token(), [&] { ++runs; });
  EXPECT_EQ(runs, 2);
}

TEST(Cancellation, AChildOfADefaultTokenIsAnIndependentSource) {
  CancellationSource s{CancellationToken{}};
  EXPECT_TRUE(s.token().can_be_cancelled());
  EXPECT_FALSE(s.is_cancelled());
  EXPECT_TRUE(s.cancel());
  EXPECT_TRUE(s.is_cancelled());
}

TEST(Cancellation, AChildKeepsWorkingAfterEveryHandleOfItsParentIsGone) {
  auto parent = std::make_unique<CancellationSource>();
  CancellationSource child(parent->token());
  int runs = 0;
  CancellationCallback cb(child.token(), [&] { ++runs; });
  parent.reset();
  EXPECT_FALSE(child.is_cancelled());
  EXPECT_TRUE(child.cancel());
  EXPECT_EQ(runs, 1);
}

// Children linked into a parent that lives on (a server's root source, say) must unlink when they
// die: 100k child sources with callbacks, and callbacks on the parent itself, come and go.
TEST(Cancellation, ALongLivedParentDoesNotAccumulateDeadChildren) {
  CancellationSource parent;
  std::atomic<int> dead_runs{0};
  auto churn = [&](int n) {
    for (int i = 0; i < n; ++i) {
      CancellationSource child(parent.token());
      CancellationCallback on_child(child.token(), [&] { dead_runs.fetch_add(1); });
      CancellationCallback on_parent(parent.token(), [&] { dead_runs.fetch_add(1); });
    }
  };
  churn(1000);
  const long before = heap_in_use();
  churn(100'000);
  const long after = heap_in_use();
  EXPECT_EQ(after, before) << "heap left behind by 100k dead children";

  // The parent still works: a live child hears it, the dead ones do not.
  CancellationSource live(parent.token());
  int live_runs = 0;
  CancellationCallback on_live(live.token(), [&] { ++live_runs; });
  EXPECT_TRUE(parent.cancel());
  EXPECT_EQ(live_runs, 1);
  EXPECT_EQ(dead_runs.load(), 0);
}

// ----------------------------------------------------------------------------------------------
// with_cancellation

TEST(Cancellation, WithCancellationReturnsTheResultWhenTheTokenIsNotCancelled) {
  Runtime rt({.workers = 2});
  CancellationSource s;
  EXPECT_EQ(rt.block_on(weft::with_cancellation(s.token(), value_of(5))), 5);
  EXPECT_EQ(rt.block_on([](CancellationToken t) -> Task<int> {
              const int a = co_await weft::with_cancellation(t, value_of(6));
              const int b = co_await weft::with_cancellation(CancellationToken{}, value_of(7));
              co_return a * 10 + b;
            }(s.token())),
            67);
}

TEST(Cancellation, WithCancellationCancelsTheTaskWhenTheTokenIsCancelledFromAnotherThread) {
  Runtime rt({.workers = 2});
  CancellationSource s;
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  Future<void> f = rt.submit(
      weft::with_cancellation(s.token(), work_until_cancelled(started, saw_cancelled)));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  std::thread([&] { s.cancel(); }).join();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(saw_cancelled.load());
}

TEST(Cancellation, WithCancellationWakesAParkedWaitWhenTheTokenIsCancelled) {
  weft::Event never_set;
  Runtime rt({.workers = 2});
  CancellationSource s;
  std::atomic<bool> waiting{false};
  Future<void> f = rt.submit([](weft::Event& e, std::atomic<bool>& waiting,
                                CancellationToken t) -> Task<void> {
    co_await weft::with_cancellation(std::move(t), [](weft::Event& e,
                                                      std::atomic<bool>& waiting) -> Task<void> {
      waiting.store(true);
      co_await e.wait();
    }(e, waiting));
  }(never_set, waiting, s.token()));
  ASSERT_TRUE(spin_until([&] { return waiting.load(); }));
  s.cancel();
  ASSERT_TRUE(f.wait_for(60s)) << "the parked wait was not woken by the cancellation";
  EXPECT_THROW(f.get(), Cancelled);
}

TEST(Cancellation, WithAnAlreadyCancelledTokenTheTaskNeverRuns) {
  Runtime rt({.workers = 2});
  CancellationSource s;
  s.cancel();
  std::atomic<bool> ran{false};
  EXPECT_THROW(rt.block_on(weft::with_cancellation(s.token(), set_flag(ran))), Cancelled);
  std::atomic<bool> caught{false};
  rt.block_on([](CancellationToken t, std::atomic<bool>& ran,
                 std::atomic<bool>& caught) -> Task<void> {
    try {
      co_await weft::with_cancellation(std::move(t), set_flag(ran));
    } catch (const Cancelled&) {
      caught.store(true);
    }
  }(s.token(), ran, caught));
  EXPECT_TRUE(caught.load());
  EXPECT_FALSE(ran.load());
}

TEST(Cancellation, WithCancellationStillObeysTheCallersCancellation) {
  Runtime rt({.workers = 2});
  CancellationSource s;
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  Future<void> f = rt.submit([](CancellationToken t, std::atomic<bool>& started,
                                std::atomic<bool>& saw_cancelled) -> Task<void> {
    co_await weft::with_cancellation(std::move(t), work_until_cancelled(started, saw_cancelled));
  }(s.token(), started, saw_cancelled));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(saw_cancelled.load());
  EXPECT_FALSE(s.is_cancelled()) << "the caller's cancellation leaked into the token's source";
}

// Only the work under the token was cancelled, not the caller: catching its Cancelled and going on
// is legitimate, and is not reported as a swallowed cancellation.
TEST(Cancellation, ACallerThatCatchesTheCancelledOfWithCancellationGoesOnUncancelled) {
  SwallowedCancellationRecorder recorder;
  Runtime rt({.workers = 2});
  CancellationSource s;
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  Future<int> f = rt.submit([](CancellationToken t, std::atomic<bool>& started,
                               std::atomic<bool>& saw_cancelled) -> Task<int> {
    bool caught = false;
    try {
      co_await weft::with_cancellation(std::move(t), work_until_cancelled(started, saw_cancelled));
    } catch (const Cancelled&) {
      caught = true;
    }
    co_await weft::this_task::checkpoint();
    co_await weft::this_task::yield();
    const int v = co_await value_of(caught ? 1 : 0);
    co_return v + (weft::this_task::cancelled() ? 10 : 0);
  }(s.token(), started, saw_cancelled));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  s.cancel();
  EXPECT_EQ(f.get(), 1);
  EXPECT_TRUE(saw_cancelled.load());
  EXPECT_EQ(recorder.count(), 0);
}

// ----------------------------------------------------------------------------------------------
// shield

struct ShieldedCleanup {
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  std::atomic<int> cleanup_result{-1};
  std::atomic<bool> cancelled_inside_cleanup{true};
  std::atomic<bool> cancelled_again_after{false};
};

// Passes through every kind of suspension point; none may throw under a shield.
Task<int> cleanup(ShieldedCleanup& s) {
  co_await weft::this_task::checkpoint();
  co_await weft::this_task::yield();
  auto [a, b] = co_await safe_gather(value_of(1), value_of(2));
  const int c = co_await value_of(3);
  s.cancelled_inside_cleanup.store(weft::this_task::cancelled());
  co_return a + b + c;
}

TEST(Cancellation, AShieldRunsCleanupInsideAnAlreadyCancelledTask) {
  ShieldedCleanup s;
  Runtime rt({.workers = 2});
  Future<void> f = rt.submit([](ShieldedCleanup& s) -> Task<void> {
    bool cancelled = false;
    try {
      std::atomic<bool> ignored{false};
      co_await work_until_cancelled(s.started, ignored);
    } catch (const Cancelled&) {
      cancelled = true;  // no co_await in a handler: the cleanup comes after it
    }
    s.saw_cancelled.store(cancelled);
    const int r = co_await weft::shield(cleanup(s));
    s.cleanup_result.store(r);
    try {
      co_await weft::this_task::checkpoint();  // the task's own cancellation is still there
    } catch (const Cancelled&) {
      s.cancelled_again_after.store(true);
      throw;
    }
  }(s));
  ASSERT_TRUE(spin_until([&] { return s.started.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(s.saw_cancelled.load());
  EXPECT_EQ(s.cleanup_result.load(), 6) << "the shielded cleanup did not run to its end";
  EXPECT_FALSE(s.cancelled_inside_cleanup.load());
  EXPECT_TRUE(s.cancelled_again_after.load());
}

TEST(Cancellation, AShieldedTaskIsImmuneToItsCallersCancellationWhileItRuns) {
  weft::Event go;
  struct Shared {
    std::atomic<bool> inside{false};
    std::atomic<int> value{-1};
    std::atomic<bool> after{false};
  } s;
  Runtime rt({.workers = 2});
  Future<void> f = rt.submit([](Shared& s, weft::Event& go) -> Task<void> {
    const int v = co_await weft::shield([](Shared& s, weft::Event& go) -> Task<int> {
      s.inside.store(true);
      co_await go.wait();  // a parked wait that the outer cancellation must not wake
      co_await weft::this_task::checkpoint();
      co_await weft::this_task::yield();
      co_return 42;
    }(s, go));
    s.value.store(v);
    co_await weft::this_task::checkpoint();
    s.after.store(true);
  }(s, go));
  ASSERT_TRUE(spin_until([&] { return s.inside.load(); }));
  f.cancel();
  go.set();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(s.value.load(), 42) << "the shielded task was cancelled";
  EXPECT_FALSE(s.after.load()) << "the caller's next suspension point did not throw";
}

TEST(Cancellation, CancellationFromInsideAShieldStillApplies) {
  Runtime rt({.workers = 2});
  CancellationSource s;
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  Future<void> f = rt.submit([](CancellationToken t, std::atomic<bool>& started,
                                std::atomic<bool>& saw_cancelled) -> Task<void> {
    co_await weft::shield(
        weft::with_cancellation(std::move(t), work_until_cancelled(started, saw_cancelled)));
  }(s.token(), started, saw_cancelled));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  s.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(saw_cancelled.load());
}

// ----------------------------------------------------------------------------------------------
// Future::cancel and tasks cancelled before they start

TEST(Cancellation, FutureCancelCancelsARunningRootTaskAtItsNextSuspensionPoint) {
  Runtime rt({.workers = 2});
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  Future<void> f = rt.submit(work_until_cancelled(started, saw_cancelled));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  f.cancel();  // twice is harmless
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(saw_cancelled.load());
}

TEST(Cancellation, FutureCancelAfterTheTaskEndedChangesNothing) {
  Runtime rt({.workers = 2});
  Future<int> f = rt.submit(value_of(3));
  ASSERT_TRUE(f.wait_for(60s));
  f.cancel();
  EXPECT_EQ(f.get(), 3);
}

TEST(Cancellation, ARootTaskCancelledBeforeItStartsNeverRunsItsBody) {
  Runtime rt({.workers = 1});
  std::atomic<bool> holding{false};
  std::atomic<bool> release{false};
  // Holds the only worker (without suspending) until released.
  Future<void> blocker = rt.submit([](std::atomic<bool>& holding,
                                      std::atomic<bool>& release) -> Task<void> {
    holding.store(true);
    spin_until([&] { return release.load(); });
    co_return;
  }(holding, release));
  ASSERT_TRUE(spin_until([&] { return holding.load(); }));
  std::atomic<bool> ran{false};
  Future<void> f = rt.submit(set_flag(ran));
  f.cancel();
  release.store(true);
  blocker.get();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(ran.load()) << "a task cancelled before it started ran its body";
}

TEST(Cancellation, AChildAwaitedByACancelledTaskNeverRunsItsBody) {
  Runtime rt({.workers = 2});
  std::atomic<bool> waiting{false};
  std::atomic<bool> cancel_requested{false};
  std::atomic<bool> ran{false};
  Future<void> f = rt.submit([](std::atomic<bool>& waiting, std::atomic<bool>& cancel_requested,
                                std::atomic<bool>& ran) -> Task<void> {
    waiting.store(true);
    spin_until([&] { return cancel_requested.load(); });
    co_await set_flag(ran);
  }(waiting, cancel_requested, ran));
  ASSERT_TRUE(spin_until([&] { return waiting.load(); }));
  f.cancel();
  cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_FALSE(ran.load());
}

TEST(Cancellation, DestroyingTheRuntimeCancelsAndAwaitsItsRunningTasks) {
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  std::optional<Future<void>> f;
  {
    Runtime rt({.workers = 2});
    f.emplace(rt.submit(work_until_cancelled(started, saw_cancelled)));
    ASSERT_TRUE(spin_until([&] { return started.load(); }));
  }
  EXPECT_TRUE(saw_cancelled.load());
  EXPECT_THROW(f->get(), Cancelled);
}

// ----------------------------------------------------------------------------------------------
// Level-triggered delivery

TEST(Cancellation, EverySuspensionPointAfterTheCancellationThrowsCancelledAgain) {
  weft::Event never_set;
  struct Shared {
    std::atomic<bool> waiting{false};
    std::atomic<bool> cancel_requested{false};
    std::atomic<bool> child_ran{false};
    std::atomic<int> throws{0};
    std::atomic<bool> reached_end{false};
  } s;
  Runtime rt({.workers = 2});
  Future<void> f = rt.submit([](Shared& s, weft::Event& never_set) -> Task<void> {
    s.waiting.store(true);
    spin_until([&] { return s.cancel_requested.load(); });  // cancelled, without suspending
    try {
      co_await weft::this_task::checkpoint();
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await weft::this_task::checkpoint();
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await weft::this_task::yield();
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await set_flag(s.child_ran);
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await safe_gather(set_flag(s.child_ran), value_of(1));
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await safe_gather(weft::return_exceptions, set_flag(s.child_ran));
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await never_set.wait();
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    try {
      co_await weft::with_cancellation(CancellationToken{}, set_flag(s.child_ran));
    } catch (const Cancelled&) {
      s.throws.fetch_add(1);
    }
    co_await weft::this_task::checkpoint();  // and once more, uncaught
    s.reached_end.store(true);
  }(s, never_set));
  ASSERT_TRUE(spin_until([&] { return s.waiting.load(); }));
  f.cancel();
  s.cancel_requested.store(true);
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(s.throws.load(), 8);
  EXPECT_FALSE(s.child_ran.load()) << "a task started in a cancelled scope ran its body";
  EXPECT_FALSE(s.reached_end.load());
}

// ----------------------------------------------------------------------------------------------
// Swallowed cancellation

Task<int> swallow_cancellation(std::atomic<bool>& started) {
  bool swallowed = false;
  try {
    std::atomic<bool> ignored{false};
    co_await work_until_cancelled(started, ignored);
  } catch (const Cancelled&) {
    swallowed = true;  // and not rethrown
  }
  co_return swallowed ? 7 : 0;
}

TEST(Cancellation, ATaskThatSwallowsCancelledIsReportedWithADescription) {
  SwallowedCancellationRecorder recorder;
  Runtime rt({.workers = 2});
  std::atomic<bool> started{false};
  Future<int> f = rt.submit(swallow_cancellation(started));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  EXPECT_EQ(f.get(), 7);
  EXPECT_EQ(recorder.count(), 1);
  EXPECT_FALSE(recorder.description().empty());
}

TEST(Cancellation, AGatherChildThatSwallowsItsCancellationIsReported) {
  SwallowedCancellationRecorder recorder;
  Runtime rt({.workers = 2});
  std::atomic<bool> started{false};
  try {
    rt.block_on([](std::atomic<bool>& started) -> Task<void> {
      co_await safe_gather(swallow_cancellation(started), [](std::atomic<bool>& started) -> Task<int> {
        HangGuard guard;
        while (!started.load() && !guard.expired()) co_await weft::this_task::yield();
        throw TaskError(1);
      }(started));
    }(started));
    FAIL() << "no exception";
  } catch (const TaskError& e) {
    EXPECT_EQ(e.id, 1);
  }
  EXPECT_EQ(recorder.count(), 1);
  EXPECT_FALSE(recorder.description().empty());
}

TEST(Cancellation, ATaskThatRethrowsCancelledIsNotReported) {
  SwallowedCancellationRecorder recorder;
  Runtime rt({.workers = 2});
  std::atomic<bool> started{false};
  std::atomic<bool> saw_cancelled{false};
  Future<void> f = rt.submit([](std::atomic<bool>& started,
                                std::atomic<bool>& saw_cancelled) -> Task<void> {
    try {
      co_await work_until_cancelled(started, saw_cancelled);
    } catch (const Cancelled&) {
      throw;
    }
  }(started, saw_cancelled));
  ASSERT_TRUE(spin_until([&] { return started.load(); }));
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_TRUE(saw_cancelled.load());
  EXPECT_EQ(recorder.count(), 0);
}

// A task that was cancelled but never reached a suspension point afterwards was never handed
// Cancelled: returning normally is not swallowing it.
TEST(Cancellation, ACancelledTaskThatWasNeverHandedCancelledIsNotReported) {
  SwallowedCancellationRecorder recorder;
  Runtime rt({.workers = 2});
  std::atomic<bool> waiting{false};
  std::atomic<bool> cancel_requested{false};
  Future<int> f = rt.submit([](std::atomic<bool>& waiting,
                               std::atomic<bool>& cancel_requested) -> Task<int> {
    waiting.store(true);
    spin_until([&] { return cancel_requested.load(); });
    co_return 5;
  }(waiting, cancel_requested));
  ASSERT_TRUE(spin_until([&] { return waiting.load(); }));
  f.cancel();
  cancel_requested.store(true);
  EXPECT_EQ(f.get(), 5);
  EXPECT_EQ(recorder.count(), 0);
}

// ----------------------------------------------------------------------------------------------
// The order cancellation becomes visible in, and its depth (weft/detail/cancel_state.hpp)

// Once any thread reads a scope as cancelled, a token of that scope (or of a scope linked below
// it) must read cancelled too. cancel() used to bump the epoch for the scope's flag before it
// marked the token mirrors: a reader could see the scope cancelled and the token not, for as
// long as the canceller waited for the scope's lock (a thread here keeps taking it).
TEST(Cancellation, ATokenReadsCancelledOnceItsScopeDoes) {
  using weft::detail::CancelCallbackNode;
  using weft::detail::CancelState;
  using weft::detail::SharedCancelState;
  const int rounds = weft_test::kSanitized ? 300 : 3000;
  std::atomic<int> stale_tokens{0};
  for (int round = 0; round < rounds; ++round) {
    CancelState scope;
    CancelState child(&scope);
    SharedCancelState* scope_token = scope.mirror();
    SharedCancelState* child_token = child.mirror();  // links `child` below `scope`
    std::atomic<bool> stop{false};
    std::thread contender([&] {
      CancelCallbackNode node;
      node.run = [](CancelCallbackNode*) noexcept {};
      // Relaxed: a stop request, nothing else to see.
      while (!stop.load(std::memory_order_relaxed) && scope.add_callback(node))
        scope.remove_callback(node);
    });
    std::thread reader([&] {
      while (!scope.is_cancelled()) {
      }
      if (!scope_token->state().is_cancelled()) stale_tokens.fetch_add(1);
      if (!child_token->state().is_cancelled()) stale_tokens.fetch_add(1);
      if (!child.is_cancelled()) stale_tokens.fetch_add(1);
    });
    EXPECT_TRUE(scope.cancel());
    reader.join();
    stop.store(true, std::memory_order_relaxed);
    contender.join();
    child_token->release();
    scope_token->release();
  }
  EXPECT_EQ(stale_tokens.load(), 0) << "a token read 'not cancelled' after its scope read "
                                       "'cancelled'";
}

// Each level is a gather of one child: a scope. The sleep at the bottom links the whole chain
// (its wake-up must reach it), and the cancellation then crosses every level. Both used to
// recurse once per level: a stack overflow at this depth.
weft::Task<void> nested_scopes(int depth) {
  if (depth == 0) {
    co_await weft::sleep_for(weft::Duration::max());
    co_return;
  }
  (void)co_await weft::safe_gather(nested_scopes(depth - 1));
}

TEST(Cancellation, TwoHundredThousandNestedScopesLinkAndCancelWithoutOverflowingTheStack) {
  Runtime rt({.workers = 2});
  weft::Future<void> f = rt.submit(nested_scopes(200'000));
  ASSERT_TRUE(spin_until([&] { return rt.stats().timers_armed == 1; }))
      << "the bottom never went to sleep";
  f.cancel();
  EXPECT_THROW(f.get(), Cancelled);
  EXPECT_EQ(rt.stats().timers_armed, 0u);
}

}  // namespace

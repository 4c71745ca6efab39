// weft/detail/timer_service.hpp: the internal timer service that sleeps and timeouts are built
// on: firing order, disarm (before, after and during a fire), callbacks that arm and disarm,
// the armed count, the heap under random operations, the lazily started and named thread;
// and Deadline::after's saturation (weft/deadline.hpp), which every timer deadline goes
// through.
#include <weft/deadline.hpp>
#include <weft/detail/timer_service.hpp>
#include <weft/errors.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using weft::Deadline;
using weft::Duration;
using weft::UsageError;
using weft::detail::TimerNode;
using weft::detail::TimerService;
using weft_test::Rng;
using weft_test::spin_until;

// A timer that records when and on which thread it fired, and how often.
struct Probe : TimerNode {
  Probe() { fire = &on_fire; }
  static void on_fire(TimerNode* node) noexcept {
    auto* self = static_cast<Probe*>(node);
    self->fired_at = Clock::now();
    self->thread = std::this_thread::get_id();
    if (self->then) self->then(*self);
    self->fires.fetch_add(1, std::memory_order_release);
  }
  Clock::time_point fired_at{};
  std::thread::id thread;
  void (*then)(Probe&) = nullptr;
  void* context = nullptr;
  std::atomic<int> fires{0};
};

// ----------------------------------------------------------------------------------------------
// firing

TEST(TimerService, AnArmedTimerFiresOnceOnTheTimerThreadAfterItsDeadline) {
  TimerService timers("test-tmr");
  Probe p;
  const auto when = Clock::now() + 20ms;
  timers.arm(p, when);
  EXPECT_EQ(timers.armed(), 1u);
  ASSERT_TRUE(spin_until([&] { return p.fires.load(std::memory_order_acquire) == 1; }));
  EXPECT_GE(p.fired_at, when);
  EXPECT_NE(p.thread, std::this_thread::get_id());
  EXPECT_EQ(timers.armed(), 0u);
  EXPECT_FALSE(timers.disarm(p));  // already fired
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(p.fires.load(), 1);
}

TEST(TimerService, ATimerWhoseDeadlineHasPassedFiresAtOnce) {
  TimerService timers("test-tmr");
  Probe p;
  timers.arm(p, Clock::now() - 1h);
  ASSERT_TRUE(spin_until([&] { return p.fires.load(std::memory_order_acquire) == 1; }));
  Probe q;
  timers.arm(q, Clock::time_point::min());
  ASSERT_TRUE(spin_until([&] { return q.fires.load(std::memory_order_acquire) == 1; }));
}

TEST(TimerService, TimersFireInDeadlineOrder) {
  TimerService timers("test-tmr");
  constexpr int kTimers = 200;
  std::vector<std::unique_ptr<Probe>> probes;
  std::mutex order_mutex;
  std::vector<int> order;
  struct Context {
    std::mutex* mutex;
    std::vector<int>* order;
    int id;
  };
  std::vector<Context> contexts(kTimers);
  Rng rng{42};
  // Far enough ahead that every timer is armed before the first is due, also on a loaded
  // machine under TSan (20 ms was not: a timer armed after earlier ones had fired broke the
  // order the test expects, which is not the service's fault).
  const auto base = Clock::now() + 500ms;
  std::vector<std::pair<Clock::time_point, int>> expected;
  for (int i = 0; i < kTimers; ++i) {
    probes.push_back(std::make_unique<Probe>());
    contexts[i] = Context{&order_mutex, &order, i};
    probes[i]->context = &contexts[i];
    probes[i]->then = [](Probe& p) {
      auto* c = static_cast<Context*>(p.context);
      std::lock_guard<std::mutex> lock(*c->mutex);
      c->order->push_back(c->id);
    };
    // Distinct deadlines (ties may fire in either order).
    const auto when =
        base + std::chrono::microseconds(rng.below(20'000)) + std::chrono::nanoseconds(i);
    expected.emplace_back(when, i);
    timers.arm(*probes[i], when);
  }
  std::sort(expected.begin(), expected.end());
  ASSERT_LT(Clock::now(), base) << "arming took longer than the margin: the premise is broken";
  ASSERT_TRUE(spin_until([&] {
    std::lock_guard<std::mutex> lock(order_mutex);
    return order.size() == kTimers;
  }));
  timers.stop();  // every callback has returned: the probes may go
  for (int i = 0; i < kTimers; ++i) EXPECT_EQ(order[i], expected[i].second) << i;
}

TEST(TimerService, AnEarlierTimerArmedWhileTheThreadSleepsForALaterOneFiresOnTime) {
  TimerService timers("test-tmr");
  Probe late;
  Probe early;
  timers.arm(late, Clock::now() + 1h);
  std::this_thread::sleep_for(5ms);  // the thread now sleeps until the late one
  const auto when = Clock::now() + 10ms;
  timers.arm(early, when);
  ASSERT_TRUE(spin_until([&] { return early.fires.load(std::memory_order_acquire) == 1; }));
  EXPECT_GE(early.fired_at, when);
  EXPECT_EQ(late.fires.load(), 0);
  EXPECT_TRUE(timers.disarm(late));
}

TEST(TimerService, ATimerAtTheEndOfTimeNeverFiresAndCanBeDisarmed) {
  TimerService timers("test-tmr");
  Probe p;
  timers.arm(p, Clock::time_point::max());
  std::this_thread::sleep_for(10ms);
  EXPECT_EQ(p.fires.load(), 0);
  EXPECT_EQ(timers.armed(), 1u);
  EXPECT_TRUE(timers.disarm(p));
  EXPECT_EQ(timers.armed(), 0u);
}

// ----------------------------------------------------------------------------------------------
// disarm

TEST(TimerService, DisarmBeforeTheDeadlineReturnsTrueAndTheCallbackNeverRuns) {
  TimerService timers("test-tmr");
  Probe p;
  timers.arm(p, Clock::now() + 20ms);
  EXPECT_TRUE(timers.disarm(p));
  EXPECT_EQ(timers.armed(), 0u);
  EXPECT_FALSE(timers.disarm(p));  // twice is harmless
  std::this_thread::sleep_for(40ms);
  EXPECT_EQ(p.fires.load(), 0);
}

TEST(TimerService, ANodeThatWasNeverArmedDisarmsToFalse) {
  TimerService timers("test-tmr");
  Probe p;
  EXPECT_FALSE(timers.disarm(p));
}

TEST(TimerService, ADisarmedNodeCanBeArmedAgain) {
  TimerService timers("test-tmr");
  Probe p;
  timers.arm(p, Clock::now() + 1h);
  EXPECT_TRUE(timers.disarm(p));
  timers.arm(p, Clock::now());
  ASSERT_TRUE(spin_until([&] { return p.fires.load(std::memory_order_acquire) == 1; }));
  timers.arm(p, Clock::now());  // and after firing
  ASSERT_TRUE(spin_until([&] { return p.fires.load(std::memory_order_acquire) == 2; }));
}

TEST(TimerService, DisarmWaitsUntilARunningCallbackHasFinished) {
  TimerService timers("test-tmr");
  struct Gate {
    std::atomic<bool> entered{false};
    std::atomic<bool> release{false};
  } gate;
  Probe p;
  p.context = &gate;
  p.then = [](Probe& self) {
    auto* g = static_cast<Gate*>(self.context);
    g->entered.store(true);
    while (!g->release.load()) std::this_thread::yield();
  };
  timers.arm(p, Clock::now());
  ASSERT_TRUE(spin_until([&] { return gate.entered.load(); }));
  std::atomic<bool> returned{false};
  bool result = true;
  std::thread disarmer([&] {
    result = timers.disarm(p);
    returned.store(true);
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(returned.load()) << "disarm() returned while the callback was still running";
  gate.release.store(true);
  disarmer.join();
  EXPECT_TRUE(returned.load());
  EXPECT_FALSE(result);
  EXPECT_EQ(p.fires.load(), 1);
}

TEST(TimerService, ACallbackMayDisarmItselfAndArmAnotherTimer) {
  TimerService timers("test-tmr");
  struct Chain {
    TimerService* timers;
    Probe* next;
    bool self_disarm_result = true;
  };
  Probe first;
  Probe second;
  Chain chain{&timers, &second};
  first.context = &chain;
  first.then = [](Probe& self) {
    auto* c = static_cast<Chain*>(self.context);
    c->self_disarm_result = c->timers->disarm(self);  // must not wait for itself
    c->timers->arm(*c->next, Clock::now());
  };
  timers.arm(first, Clock::now());
  ASSERT_TRUE(spin_until([&] { return second.fires.load(std::memory_order_acquire) == 1; }));
  EXPECT_EQ(first.fires.load(std::memory_order_acquire), 1);
  EXPECT_FALSE(chain.self_disarm_result);
}

// ----------------------------------------------------------------------------------------------
// misuse, counting, the heap

TEST(TimerService, ArmingANodeThatIsAlreadyArmedIsAUsageError) {
  TimerService timers("test-tmr");
  Probe p;
  timers.arm(p, Clock::now() + 1h);
  EXPECT_THROW(timers.arm(p, Clock::now() + 2h), UsageError);
  EXPECT_EQ(timers.armed(), 1u);
  EXPECT_TRUE(timers.disarm(p));
}

TEST(TimerService, ArmingAfterStopIsAUsageError) {
  TimerService timers("test-tmr");
  timers.stop();
  timers.stop();  // idempotent
  Probe p;
  EXPECT_THROW(timers.arm(p, Clock::now()), UsageError);
}

TEST(TimerService, ArmedCountsTheTimersWaitingToFire) {
  TimerService timers("test-tmr");
  std::vector<Probe> probes(1000);
  for (Probe& p : probes) timers.arm(p, Clock::now() + 1h);
  EXPECT_EQ(timers.armed(), 1000u);
  for (std::size_t i = 0; i < probes.size(); i += 2) EXPECT_TRUE(timers.disarm(probes[i]));
  EXPECT_EQ(timers.armed(), 500u);
  for (std::size_t i = 1; i < probes.size(); i += 2) EXPECT_TRUE(timers.disarm(probes[i]));
  EXPECT_EQ(timers.armed(), 0u);
}

TEST(TimerService, RandomArmsAndDisarmsFromSeveralThreadsFireEachSurvivorOnceAndOnTime) {
  // Exercises the heap's sift-up and sift-down from every position: each timer that is not
  // disarmed fires exactly once, not before its deadline; each disarmed one never fires.
  TimerService timers("test-tmr");
  constexpr int kThreads = 4;
  const int per_thread = weft_test::kSanitized ? 2000 : 20000;
  std::vector<std::vector<Probe>> probes(kThreads);
  std::vector<std::vector<Clock::time_point>> deadlines(kThreads);
  std::vector<std::vector<bool>> disarmed(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    probes[t] = std::vector<Probe>(per_thread);
    deadlines[t].resize(per_thread);
    disarmed[t].assign(per_thread, false);
    threads.emplace_back([&, t] {
      Rng rng{static_cast<std::uint64_t>(t) * 7919 + 1};
      for (int i = 0; i < per_thread; ++i) {
        deadlines[t][i] = Clock::now() + std::chrono::microseconds(rng.below(30'000));
        timers.arm(probes[t][i], deadlines[t][i]);
        if (rng.below(3) == 0) {
          // Disarm a random earlier one: true exactly when it had not fired yet.
          const int j = static_cast<int>(rng.below(static_cast<std::uint64_t>(i) + 1));
          if (!disarmed[t][j]) {
            const int fires_before = probes[t][j].fires.load(std::memory_order_acquire);
            const bool removed = timers.disarm(probes[t][j]);
            const int fires_after = probes[t][j].fires.load(std::memory_order_acquire);
            EXPECT_EQ(removed, fires_after == 0);
            EXPECT_LE(fires_before, fires_after);
            disarmed[t][j] = removed;
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  ASSERT_TRUE(spin_until([&] { return timers.armed() == 0; }));
  timers.stop();  // every callback has finished
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < per_thread; ++i) {
      const Probe& p = probes[t][i];
      if (disarmed[t][i]) {
        EXPECT_EQ(p.fires.load(), 0);
      } else {
        ASSERT_EQ(p.fires.load(), 1) << t << "/" << i;
        EXPECT_GE(p.fired_at, deadlines[t][i]);
      }
    }
  }
}

// ----------------------------------------------------------------------------------------------
// the thread

// How many threads of this process carry `name`.
int threads_named(const std::string& name) {
  int n = 0;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string line;
    std::getline(comm, line);
    if (line == name) ++n;
  }
  closedir(dir);
  return n;
}

TEST(TimerService, TheTimerThreadStartsWithTheFirstTimerAndIsNamedAfterTheRuntime) {
  weft::Runtime rt({.workers = 1, .name = "lazy"});
  rt.block_on([]() -> weft::Task<int> { co_return 1; }());
  EXPECT_EQ(threads_named("lazy-tmr"), 0);
  rt.block_on(weft::sleep_for(1ms));
  EXPECT_EQ(threads_named("lazy-tmr"), 1);
}

// ----------------------------------------------------------------------------------------------
// Deadline::after saturates

TEST(Deadline, AfterAPositiveDurationIsThatFarInTheFuture) {
  const auto before = Clock::now();
  const Deadline d = Deadline::after(50ms);
  const auto after = Clock::now();
  EXPECT_FALSE(d.expired());
  EXPECT_FALSE(d.is_never());
  EXPECT_GE(d.time(), before + 50ms);
  EXPECT_LE(d.time(), after + 50ms);
  EXPECT_GT(d.remaining(), Duration::zero());
  EXPECT_LE(d.remaining(), Duration(50ms));
}

TEST(Deadline, AfterZeroOrANegativeDurationIsAlreadyExpired) {
  EXPECT_TRUE(Deadline::after(0s).expired());
  EXPECT_TRUE(Deadline::after(-1s).expired());
  EXPECT_EQ(Deadline::after(-1s).remaining(), Duration::zero());
}

TEST(Deadline, AfterADurationPastTheClocksRangeIsNeverWithoutOverflow) {
  EXPECT_TRUE(Deadline::after(Duration::max()).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::hours::max()).is_never());
  EXPECT_TRUE(Deadline::after(std::chrono::duration<double>(1e300)).is_never());
  EXPECT_EQ(Deadline::after(Duration::max()).remaining(), Duration::max());
}

TEST(Deadline, AfterAHugeNegativeDurationIsExpiredWithoutOverflow) {
  EXPECT_TRUE(Deadline::after(Duration::min()).expired());
  EXPECT_LT(Deadline::after(Duration::min()).time(), Clock::now());
  EXPECT_EQ(Deadline::after(std::chrono::hours::min()).time(), Clock::time_point::min());
  EXPECT_TRUE(Deadline::after(std::chrono::hours::min()).expired());
}

}  // namespace

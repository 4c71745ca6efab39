// Stress tests of cancellation across threads:
//   (a) task groups whose children keep spawning children, cancelled from threads that are not
//       workers (Future::cancel, CancellationSource + with_cancellation), some of them also fed
//       by a foreign spawning thread; groups that end while a cancellation from above is still
//       reaching their token;
//   (b) cancellation racing completion: tasks, group children and Event waiters that finish
//       just as they are cancelled;
//   (c) CancellationCallbacks registered and destroyed on several threads while another thread
//       cancels the source.
// Invariants are counted in plain atomics and checked after every round; the spin guard of
// test_support.hpp turns a hang into a failure. Iteration counts shrink ~10x under sanitizers.
#include <weft/event.hpp>
#include <weft/weft.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using weft_test::kSanitized;
using weft_test::spin_until;

using weft::CancellationCallback;
using weft::CancellationSource;
using weft::CancellationToken;
using weft::Cancelled;
using weft::Event;
using weft::Future;
using weft::JoinHandle;
using weft::Runtime;
using weft::Task;
using weft::task_group;
using weft::TaskGroup;
using weft::UsageError;
namespace this_task = weft::this_task;

using weft_test::Rng;

void pause_for(std::uint64_t spins) {
  for (std::uint64_t i = 0; i < spins; ++i) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }
}

// Collects the first few broken invariants of a test.
struct Errors {
  std::vector<std::string> list;
  int count = 0;
  void add(std::string what) {
    ++count;
    if (list.size() < 10) list.push_back(std::move(what));
  }
  void report() const {
    for (const std::string& e : list) ADD_FAILURE() << e;
    EXPECT_EQ(count, 0) << "broken invariants";
  }
};

// ----------------------------------------------------------------------------------------------
// (a) Task groups cancelled from foreign threads while their children keep spawning

constexpr int kWidth = 2;   // children the body spawns
constexpr int kFanout = 2;  // children each bounded child spawns, down to kDepth
constexpr int kDepth = 2;
constexpr int kBoundedTasks = kWidth * (1 + kFanout + kFanout * kFanout);  // 14

struct GroupRecord {
  bool endless = false;  // its children replace themselves until the group is cancelled
  std::atomic<bool> entered{false};  // the task awaiting the group started (not cancelled first)
  std::atomic<int> started{0};
  std::atomic<int> ended{0};
  std::atomic<int> spawned{0};
  std::atomic<int> refused{0};
  std::atomic<int> refused_uncancelled{0};  // UsageError although the group was not cancelled
  std::atomic<int> late{0};                 // child activity seen after the group returned
  std::atomic<bool> returned{false};
  // 0: not returned, 1: returned normally, 2: Cancelled, 3: anything else.
  std::atomic<int> outcome{0};
  int started_at_check = -1;
};

void note_late(GroupRecord& g) {
  if (g.returned.load(std::memory_order_acquire)) g.late.fetch_add(1, std::memory_order_relaxed);
}

Task<int> group_child(TaskGroup& tg, GroupRecord& g, int depth) {
  g.started.fetch_add(1, std::memory_order_relaxed);
  note_late(g);
  struct Exit {
    GroupRecord& g;
    ~Exit() {
      note_late(g);
      g.ended.fetch_add(1, std::memory_order_acq_rel);
    }
  } exit{g};
  const int kids = g.endless ? 1 : (depth < kDepth ? kFanout : 0);
  for (int k = 0; k < kids; ++k) {
    co_await this_task::yield();
    bool refused = false;
    try {
      auto h = tg.spawn(group_child(tg, g, depth + 1));
      g.spawned.fetch_add(1, std::memory_order_relaxed);
    } catch (const UsageError&) {
      refused = true;
      g.refused.fetch_add(1, std::memory_order_relaxed);
    }
    if (refused) {
      co_await this_task::checkpoint();  // a refusal means the group was cancelled: throws
      g.refused_uncancelled.fetch_add(1, std::memory_order_relaxed);
    }
    note_late(g);
  }
  co_return depth;
}

Task<int> run_group(GroupRecord& g) {
  g.entered.store(true, std::memory_order_relaxed);
  try {
    const int r = co_await task_group([&g](TaskGroup& tg) -> Task<int> {
      for (int i = 0; i < kWidth; ++i) auto h = tg.spawn(group_child(tg, g, 0));
      co_return kWidth;
    });
    g.outcome.store(1, std::memory_order_relaxed);
    g.returned.store(true, std::memory_order_release);
    co_return r;
  } catch (const Cancelled&) {
    g.outcome.store(2, std::memory_order_relaxed);
    g.returned.store(true, std::memory_order_release);
    throw;
  } catch (...) {
    g.outcome.store(3, std::memory_order_relaxed);
    g.returned.store(true, std::memory_order_release);
    throw;
  }
}

void check_group(const GroupRecord& g, int result_kind, const std::string& where, Errors& errors) {
  const int started = g.started.load();
  const int ended = g.ended.load();
  if (result_kind == 0) errors.add(where + ": an exception other than Cancelled");
  if (!g.entered.load()) {
    // Cancelled before the awaiting task started: the group never existed.
    if (result_kind != 2) errors.add(where + ": a task that never started did not end Cancelled");
    if (started != 0) errors.add(where + ": children of a group that never existed ran");
    return;
  }
  if (g.outcome.load() == 0 || !g.returned.load()) errors.add(where + ": the group did not return");
  if (result_kind == 1 && g.outcome.load() != 1) errors.add(where + ": value without a normal return");
  if (result_kind == 2 && g.outcome.load() == 1) errors.add(where + ": Cancelled after a normal return");
  if (g.endless && result_kind == 1) errors.add(where + ": an endless group returned normally");
  if (started != ended)
    errors.add(where + ": " + std::to_string(started) + " children started, " +
               std::to_string(ended) + " ended");
  if (g.late.load() != 0) errors.add(where + ": a child ran after its group returned");
  if (g.refused_uncancelled.load() != 0)
    errors.add(where + ": spawn refused in a group that was not cancelled");
  if (!g.endless && result_kind == 1 && started != kBoundedTasks)
    errors.add(where + ": a finished group ran " + std::to_string(started) + " of " +
               std::to_string(kBoundedTasks) + " children");
}

TEST(CancellationStress, TaskGroupsCancelledFromForeignThreadsWhileChildrenKeepSpawning) {
  Runtime rt({.workers = 4});
  const int rounds = kSanitized ? 100 : 1000;
  constexpr int kGroups = 100;
  Errors errors;
  Rng rng{0x2545f4914f6cdd1dULL};
  long cancelled = 0;
  long finished = 0;
  long children = 0;
  std::vector<std::unique_ptr<GroupRecord>> previous;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<GroupRecord>> groups;
    std::vector<Future<int>> futures;
    std::vector<CancellationSource> sources;
    std::vector<std::uint64_t> delays;
    std::vector<bool> cancel_it;
    groups.reserve(kGroups);
    futures.reserve(kGroups);
    sources.resize(kGroups);
    for (int i = 0; i < kGroups; ++i) {
      groups.push_back(std::make_unique<GroupRecord>());
      GroupRecord& g = *groups.back();
      g.endless = rng.below(3) == 0;
      cancel_it.push_back(g.endless || rng.below(2) == 0);
      delays.push_back(rng.below(4) == 0 ? 0 : rng.below(300));
      if (i % 2 == 0) futures.push_back(rt.submit(run_group(g)));
      else futures.push_back(rt.submit(weft::with_cancellation(sources[i].token(), run_group(g))));
    }
    // The canceller: each group after a random pause, by its Future or by its source.
    std::thread canceller([&] {
      for (int i = 0; i < kGroups; ++i) {
        pause_for(delays[i]);
        if (!cancel_it[i]) continue;
        if (i % 2 == 0) futures[i].cancel();
        else sources[i].cancel();
      }
    });
    std::vector<int> kinds(kGroups, 0);
    for (int i = 0; i < kGroups; ++i) {
      try {
        if (futures[i].get() == kWidth) kinds[i] = 1;
      } catch (const Cancelled&) {
        kinds[i] = 2;
      } catch (...) {
        kinds[i] = 0;
      }
    }
    canceller.join();
    for (int i = 0; i < kGroups; ++i) {
      const std::string where = "round " + std::to_string(round) + " group " + std::to_string(i) +
                                (groups[i]->endless ? " (endless)" : "");
      check_group(*groups[i], kinds[i], where, errors);
      groups[i]->started_at_check = groups[i]->started.load();
      children += groups[i]->started_at_check;
      if (kinds[i] == 2) ++cancelled;
      if (kinds[i] == 1) ++finished;
    }
    // Nothing of the previous round moved since it was checked.
    for (std::size_t i = 0; i < previous.size(); ++i) {
      if (previous[i]->started.load() != previous[i]->started_at_check ||
          previous[i]->late.load() != 0)
        errors.add("round " + std::to_string(round - 1) + " group " + std::to_string(i) +
                   ": a child started after its group was checked");
    }
    previous = std::move(groups);
  }
  errors.report();
  EXPECT_GT(cancelled, 0);
  EXPECT_GT(finished, 0);
  std::printf("%d groups: %ld cancelled, %ld finished, %ld children\n", rounds * kGroups, cancelled,
              finished, children);
}

// Groups also fed by a foreign thread that spawns into them until it is refused. A shielded
// child holds each group open until its spawner is done with it, so the group is alive for
// every spawn() call; the canceller cancels the groups meanwhile.
TEST(CancellationStress, ForeignSpawnersRacingCancellationNeverOutliveTheirGroup) {
  Runtime rt({.workers = 4});
  const int rounds = kSanitized ? 20 : 200;
  constexpr int kGroups = 16;
  Errors errors;
  long foreign_spawns = 0;
  long foreign_refusals = 0;
  struct Fed {
    GroupRecord record;
    std::atomic<TaskGroup*> group{nullptr};  // published by the gate once it runs
    std::atomic<bool> ended{false};          // its Future is ready (set by the main thread)
    Event spawner_done;
    std::atomic<int> foreign_started{0};
    std::atomic<int> foreign_ended{0};
    int spawns = 0;
    int refusals = 0;
    bool refused_uncancelled = false;
  };
  struct Parts {
    static Task<int> foreign_child(Fed& f) {
      f.foreign_started.fetch_add(1, std::memory_order_relaxed);
      note_late(f.record);
      struct Exit {
        Fed& f;
        ~Exit() {
          note_late(f.record);
          f.foreign_ended.fetch_add(1, std::memory_order_acq_rel);
        }
      } exit{f};
      co_await this_task::yield();
      co_return 1;
    }
    static Task<int> run(Fed& f) {
      GroupRecord& g = f.record;
      g.entered.store(true, std::memory_order_relaxed);
      try {
        const int r = co_await task_group([&f, &g](TaskGroup& tg) -> Task<int> {
          // The gate publishes the group only once it runs: a cancellation before it starts
          // could end the group under the spawner's feet.
          auto gate = tg.spawn(weft::shield([](Fed& f, TaskGroup& tg) -> Task<void> {
            f.group.store(&tg, std::memory_order_release);
            co_await f.spawner_done.wait();
          }(f, tg)));
          for (int i = 0; i < kWidth; ++i) auto h = tg.spawn(group_child(tg, g, 0));
          co_return kWidth;
        });
        g.outcome.store(1);
        g.returned.store(true, std::memory_order_release);
        co_return r;
      } catch (const Cancelled&) {
        g.outcome.store(2);
        g.returned.store(true, std::memory_order_release);
        throw;
      } catch (...) {
        g.outcome.store(3);
        g.returned.store(true, std::memory_order_release);
        throw;
      }
    }
  };
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<Fed>> fed;
    std::vector<Future<int>> futures;
    for (int i = 0; i < kGroups; ++i) {
      fed.push_back(std::make_unique<Fed>());
      fed.back()->record.endless = true;
      futures.push_back(rt.submit(Parts::run(*fed.back())));
    }
    // One spawner thread per group would be too many: two threads share them.
    std::vector<std::thread> spawners;
    for (int s = 0; s < 2; ++s) {
      spawners.emplace_back([&, s] {
        for (int i = s; i < kGroups; i += 2) {
          Fed& f = *fed[i];
          spin_until([&] {
            return f.group.load(std::memory_order_acquire) != nullptr ||
                   f.ended.load(std::memory_order_acquire);
          });
          TaskGroup* group = f.group.load(std::memory_order_acquire);
          if (group == nullptr) {
            // Cancelled before its gate ran: the group ended without publishing itself.
            f.spawner_done.set();
            continue;
          }
          TaskGroup& tg = *group;
          const CancellationToken token = tg.token();
          for (int k = 0; k < 64; ++k) {
            try {
              JoinHandle<int> h = tg.spawn(Parts::foreign_child(f));
              ++f.spawns;
            } catch (const UsageError&) {
              ++f.refusals;
              // The group's token follows its cancellation by a callback; it must read
              // cancelled once the cancelling thread is through (see TaskGroup test
              // ItsTokenReadsCancelledWheneverSpawnRefusesBecauseTheGroupWasCancelled).
              if (!spin_until([&] { return token.is_cancelled(); })) f.refused_uncancelled = true;
              break;
            }
          }
          f.spawner_done.set();
        }
      });
    }
    std::thread canceller([&] {
      for (int i = 0; i < kGroups; ++i) {
        pause_for(static_cast<std::uint64_t>(i) * 300);
        futures[i].cancel();
      }
    });
    for (int i = 0; i < kGroups; ++i) {
      int kind = 0;
      try {
        futures[i].get();
        kind = 1;
      } catch (const Cancelled&) {
        kind = 2;
      } catch (...) {
      }
      Fed& f = *fed[i];
      f.ended.store(true, std::memory_order_release);
      const std::string where = "round " + std::to_string(round) + " fed group " + std::to_string(i);
      check_group(f.record, kind, where, errors);
      if (f.foreign_started.load() != f.foreign_ended.load())
        errors.add(where + ": a foreign child started but did not end");
      if (f.foreign_started.load() > 64) errors.add(where + ": more foreign children than spawns");
    }
    for (std::thread& t : spawners) t.join();
    canceller.join();
    for (int i = 0; i < kGroups; ++i) {
      Fed& f = *fed[i];
      const std::string where = "round " + std::to_string(round) + " fed group " + std::to_string(i);
      if (f.refused_uncancelled) errors.add(where + ": a foreign spawn refused before cancellation");
      if (f.foreign_started.load() > f.spawns)
        errors.add(where + ": a foreign child ran that was never spawned");
      foreign_spawns += f.spawns;
      foreign_refusals += f.refusals;
    }
  }
  errors.report();
  EXPECT_GT(foreign_refusals, 0);
  std::printf("%ld foreign spawns, %ld refusals\n", foreign_spawns, foreign_refusals);
}

// A cancellation that comes from above (the root, cancelled through its Future by a foreign
// thread) reaches the group's scope through the scope's link, and the group's token state (its
// mirror) from there. Meanwhile the group's child notices the cancellation by polling and ends,
// so the group ends and its scope, which holds the last reference to the token's state, goes
// away while the foreign thread may still be cancelling that state. Nothing in use may be freed:
// ASan and TSan watch the foreign threads' accesses. (A race: each cancel opens a window of a
// few instructions, so the test runs many of them, on two cancelling threads.)
constexpr int kPollingGroups = 64;

TEST(CancellationStress, AGroupEndingWhileACancellationFromAboveReachesItsTokenFreesNothingInUse) {
  Runtime rt({.workers = 4});
  const int rounds = 400;  // the same under sanitizers: they are what detects it
  Errors errors;
  struct Record {
    std::atomic<bool> linked{false};  // the group's token state exists and is linked
    std::atomic<int> started{0};
    std::atomic<int> ended{0};
  };
  struct Parts {
    static Task<int> child(Record& r) {
      r.started.fetch_add(1, std::memory_order_relaxed);
      struct Exit {
        Record& r;
        ~Exit() { r.ended.fetch_add(1, std::memory_order_acq_rel); }
      } exit{r};
      for (;;) {
        for (int k = 0; k < 64 && !this_task::cancelled(); ++k) pause_for(4);
        co_await this_task::yield();  // throws Cancelled once the group is cancelled
      }
      co_return 0;
    }
    static Task<int> run(Record& r) {
      co_return co_await task_group([&r](TaskGroup& tg) -> Task<int> {
        { const CancellationToken token = tg.token(); }  // the scope keeps the only reference
        r.linked.store(true, std::memory_order_release);
        auto h = tg.spawn(child(r));
        co_return 1;
      });
    }
  };
  for (int round = 0; round < rounds; ++round) {
    std::vector<Record> records(kPollingGroups);
    std::vector<Future<int>> futures;
    for (int i = 0; i < kPollingGroups; ++i) futures.push_back(rt.submit(Parts::run(records[i])));
    std::vector<std::thread> cancellers;
    for (int c = 0; c < 2; ++c) {
      cancellers.emplace_back([&, c] {
        for (int i = c; i < kPollingGroups; i += 2) {
          spin_until([&] { return records[i].linked.load(std::memory_order_acquire); });
          futures[i].cancel();
        }
      });
    }
    for (int i = 0; i < kPollingGroups; ++i) {
      const std::string where = "round " + std::to_string(round) + " group " + std::to_string(i);
      try {
        futures[i].get();
        errors.add(where + ": an endless group returned a value");
      } catch (const Cancelled&) {
      } catch (...) {
        errors.add(where + ": an exception other than Cancelled");
      }
    }
    for (std::thread& t : cancellers) t.join();
    for (int i = 0; i < kPollingGroups; ++i)
      if (records[i].started.load() != records[i].ended.load())
        errors.add("round " + std::to_string(round) + " group " + std::to_string(i) +
                   ": a child started but did not end");
  }
  errors.report();
}

// ----------------------------------------------------------------------------------------------
// (b) Cancellation racing completion

// Submitted tasks that take a few yields and return while a foreign thread cancels them: each
// runs at most once, and ends exactly once, with its value or with Cancelled.
TEST(CancellationStress, TasksCancelledAsTheyFinishEndExactlyOnceWithAValueOrCancelled) {
  Runtime rt({.workers = 4});
  const int rounds = kSanitized ? 100 : 1000;
  constexpr int kTasks = 64;
  Errors errors;
  long values = 0;
  long cancelled = 0;
  struct Counts {
    std::atomic<int> starts{0};
    std::atomic<int> ends{0};
    std::atomic<int> completed{0};  // reached its co_return
  };
  struct Racer {
    static Task<int> run(Counts& c, int i, int yields) {
      c.starts.fetch_add(1, std::memory_order_relaxed);
      struct Exit {
        Counts& c;
        ~Exit() { c.ends.fetch_add(1, std::memory_order_relaxed); }
      } exit{c};
      for (int k = 0; k < yields; ++k) co_await this_task::yield();
      co_await this_task::checkpoint();
      c.completed.fetch_add(1, std::memory_order_relaxed);
      co_return i;
    }
  };
  Rng rng{0x9e3779b97f4a7c15ULL};
  for (int round = 0; round < rounds; ++round) {
    std::vector<Counts> counts(kTasks);
    std::vector<Future<int>> futures;
    std::vector<std::uint64_t> delays;
    for (int i = 0; i < kTasks; ++i) {
      delays.push_back(rng.below(500));
      futures.push_back(rt.submit(Racer::run(counts[i], i, static_cast<int>(rng.below(3)))));
    }
    std::thread canceller([&] {
      for (int i = 0; i < kTasks; ++i) {
        pause_for(delays[i]);
        futures[i].cancel();
      }
    });
    std::vector<int> got(kTasks, -2);
    for (int i = 0; i < kTasks; ++i) {
      try {
        got[i] = futures[i].get();
      } catch (const Cancelled&) {
        got[i] = -1;
      } catch (...) {
      }
    }
    canceller.join();
    for (int i = 0; i < kTasks; ++i) {
      const std::string where = "round " + std::to_string(round) + " task " + std::to_string(i);
      const int starts = counts[i].starts.load();
      const int ends = counts[i].ends.load();
      const int completed = counts[i].completed.load();
      if (starts > 1) errors.add(where + ": ran twice");
      if (ends != starts) errors.add(where + ": started " + std::to_string(starts) + ", ended " + std::to_string(ends));
      if (got[i] == -2) errors.add(where + ": neither a value nor Cancelled");
      if (got[i] >= 0 && (got[i] != i || completed != 1))
        errors.add(where + ": a value from a task that did not complete");
      if (got[i] == -1 && completed != 0) errors.add(where + ": Cancelled after it completed");
      if (got[i] >= 0) ++values;
      if (got[i] == -1) ++cancelled;
    }
  }
  errors.report();
  std::printf("%ld values, %ld cancelled\n", values, cancelled);
  EXPECT_GT(values + cancelled, 0);
}

// In a group, children finish while a sibling cancels the group: every handle holds either the
// child's value (and the child completed) or Cancelled (and it did not).
TEST(CancellationStress, GroupChildrenFinishingAsTheGroupIsCancelledEndExactlyOnce) {
  Runtime rt({.workers = 4});
  const int rounds = kSanitized ? 200 : 2000;
  constexpr int kChildren = 16;
  Errors errors;
  long values = 0;
  long cancelled = 0;
  struct Child {
    std::atomic<int> starts{0};
    std::atomic<int> ends{0};
    std::atomic<int> completed{0};
  };
  struct Parts {
    static Task<int> child(Child& c, int i, int yields) {
      c.starts.fetch_add(1, std::memory_order_relaxed);
      struct Exit {
        Child& c;
        ~Exit() { c.ends.fetch_add(1, std::memory_order_relaxed); }
      } exit{c};
      for (int k = 0; k < yields; ++k) co_await this_task::yield();
      c.completed.fetch_add(1, std::memory_order_relaxed);
      co_return i;
    }
    static Task<void> canceller(TaskGroup& tg, int yields) {
      for (int k = 0; k < yields; ++k) co_await this_task::yield();
      tg.cancel();
    }
  };
  Rng rng{0xd1b54a32d192ed03ULL};
  for (int round = 0; round < rounds; ++round) {
    std::vector<Child> kids(kChildren);
    std::vector<int> yields;
    for (int i = 0; i < kChildren; ++i) yields.push_back(static_cast<int>(rng.below(4)));
    const int cancel_after = static_cast<int>(rng.below(4));
    struct Seen {
      std::vector<int> kind;  // value: i, Cancelled: -1, other: -2
      bool group_cancelled = false;
    };
    const Seen seen = rt.block_on([](std::vector<Child>& kids, std::vector<int>& yields,
                                     int cancel_after) -> Task<Seen> {
      Seen seen;
      std::vector<JoinHandle<int>> handles;
      try {
        co_await task_group([&](TaskGroup& tg) -> Task<int> {
          for (int i = 0; i < kChildren; ++i)
            handles.push_back(tg.spawn(Parts::child(kids[i], i, yields[i])));
          auto c = tg.spawn(Parts::canceller(tg, cancel_after));
          co_return 0;
        });
      } catch (const Cancelled&) {
        seen.group_cancelled = true;
      }
      for (auto& h : handles) {
        if (!h.done()) {
          seen.kind.push_back(-3);
          continue;
        }
        auto& o = h.outcome();
        if (o.has_value()) seen.kind.push_back(o.value());
        else if (o.is_cancelled()) seen.kind.push_back(-1);
        else seen.kind.push_back(-2);
      }
      co_return seen;
    }(kids, yields, cancel_after));
    if (seen.group_cancelled)
      errors.add("round " + std::to_string(round) + ": a body that returned its value lost it");
    for (int i = 0; i < kChildren; ++i) {
      const std::string where = "round " + std::to_string(round) + " child " + std::to_string(i);
      const int starts = kids[i].starts.load();
      const int completed = kids[i].completed.load();
      if (starts > 1) errors.add(where + ": ran twice");
      if (kids[i].ends.load() != starts) errors.add(where + ": started but did not end once");
      const int k = i < static_cast<int>(seen.kind.size()) ? seen.kind[i] : -4;
      if (k == -3) errors.add(where + ": not done after its group ended");
      if (k == -2 || k == -4) errors.add(where + ": neither a value nor Cancelled");
      if (k >= 0 && (k != i || completed != 1)) errors.add(where + ": a value it did not return");
      if (k == -1 && completed != 0) errors.add(where + ": Cancelled after it completed");
      if (k >= 0) ++values;
      if (k == -1) ++cancelled;
    }
  }
  errors.report();
  EXPECT_GT(cancelled, 0);
  std::printf("%ld values, %ld cancelled\n", values, cancelled);
}

// Tasks parked on Events, woken by one foreign thread's set() while another cancels them: each
// is resumed exactly once, either by the event (and returns) or by the cancellation.
TEST(CancellationStress, EventWakeUpsRacingCancellationResumeEachWaiterExactlyOnce) {
  Runtime rt({.workers = 4});
  const int rounds = kSanitized ? 100 : 1000;
  constexpr int kWaiters = 32;
  Errors errors;
  long woken = 0;
  long cancelled = 0;
  struct Slot {
    Event event;
    std::atomic<int> parked{0};
    std::atomic<int> resumed{0};
    std::atomic<int> returned{0};
  };
  struct Parts {
    static Task<int> waiter(Slot& s, int i) {
      s.parked.fetch_add(1, std::memory_order_release);
      try {
        co_await s.event.wait();
      } catch (const Cancelled&) {
        s.resumed.fetch_add(1, std::memory_order_relaxed);
        throw;
      }
      s.resumed.fetch_add(1, std::memory_order_relaxed);
      s.returned.fetch_add(1, std::memory_order_relaxed);
      co_return i;
    }
  };
  Rng rng{0x8bb84b93962eacc9ULL};
  for (int round = 0; round < rounds; ++round) {
    std::vector<Slot> slots(kWaiters);
    std::vector<Future<int>> futures;
    std::vector<std::uint64_t> set_delay;
    std::vector<std::uint64_t> cancel_delay;
    for (int i = 0; i < kWaiters; ++i) {
      set_delay.push_back(rng.below(300));
      cancel_delay.push_back(rng.below(300));
      futures.push_back(rt.submit(Parts::waiter(slots[i], i)));
    }
    std::atomic<bool> go{false};
    std::thread setter([&] {
      spin_until([&] { return go.load(); });
      for (int i = 0; i < kWaiters; ++i) {
        pause_for(set_delay[i]);
        slots[i].event.set();
      }
    });
    std::thread canceller([&] {
      spin_until([&] { return go.load(); });
      for (int i = 0; i < kWaiters; ++i) {
        pause_for(cancel_delay[i]);
        futures[i].cancel();
      }
    });
    // Most waiters are parked before the race starts (not all need be).
    for (int i = 0; i < kWaiters; ++i) {
      if (round % 2 == 0) spin_until([&] { return slots[i].parked.load() == 1; });
    }
    go.store(true);
    std::vector<int> got(kWaiters, -2);
    for (int i = 0; i < kWaiters; ++i) {
      try {
        got[i] = futures[i].get();
      } catch (const Cancelled&) {
        got[i] = -1;
      } catch (...) {
      }
    }
    setter.join();
    canceller.join();
    for (int i = 0; i < kWaiters; ++i) {
      const std::string where = "round " + std::to_string(round) + " waiter " + std::to_string(i);
      const int resumed = slots[i].resumed.load();
      const int returned = slots[i].returned.load();
      if (slots[i].parked.load() > 1) errors.add(where + ": ran twice");
      if (resumed > 1) errors.add(where + ": resumed " + std::to_string(resumed) + " times");
      if (got[i] == -2) errors.add(where + ": neither a value nor Cancelled");
      if (got[i] >= 0 && (got[i] != i || returned != 1)) errors.add(where + ": a value it did not return");
      if (got[i] == -1 && returned != 0) errors.add(where + ": Cancelled after it returned");
      if (got[i] >= 0) ++woken;
      if (got[i] == -1) ++cancelled;
    }
  }
  errors.report();
  std::printf("%ld woken, %ld cancelled\n", woken, cancelled);
  EXPECT_GT(woken, 0);
  EXPECT_GT(cancelled, 0);
}

// ----------------------------------------------------------------------------------------------
// (c) CancellationCallbacks registered and destroyed on several threads during a cancel

// A callback whose action writes into memory that dies with it: if its destructor returned
// while the action still ran on the cancelling thread, ASan would see the write land in freed
// memory.
struct Registration {
  std::atomic<int>* runs;
  std::unique_ptr<int[]> scratch;
  std::optional<CancellationCallback> callback;  // destroyed before `scratch`

  Registration(CancellationToken token, std::atomic<int>* r)
      : runs(r), scratch(std::make_unique<int[]>(4)) {
    int* s = scratch.get();
    callback.emplace(std::move(token), [r, s]() noexcept {
      s[0] += 1;
      s[1] = s[0];
      r->fetch_add(1, std::memory_order_acq_rel);
      s[2] = s[1];
    });
  }
};

TEST(CancellationStress, CallbacksRegisteredAndDestroyedDuringACancelRunAtMostOnce) {
  const int rounds = kSanitized ? 200 : 2000;
  constexpr int kThreads = 3;
  constexpr int kPerThread = 40;
  constexpr int kSlots = kThreads * kPerThread;
  Errors errors;
  long ran = 0;
  long kept = 0;
  Rng seed_rng{0x632be59bd9b4e019ULL};
  for (int round = 0; round < rounds; ++round) {
    CancellationSource parent;
    CancellationSource child(parent.token());  // linked below the parent
    const bool cancel_parent = round % 2 == 0;
    std::vector<std::atomic<int>> runs(kSlots);
    // Per slot: 0 kept to the end; 1 destroyed before the cancel began; 2 destroyed, maybe
    // during the cancel; 3 registered after the cancel finished.
    std::vector<int> fate(kSlots, -1);
    std::vector<int> runs_when_destroyed(kSlots, -1);
    std::vector<int> runs_after_construction(kSlots, -1);
    std::vector<char> on_child(kSlots, 0);  // registered on the child's token, else the parent's
    std::atomic<bool> cancel_started{false};
    std::atomic<bool> cancel_done{false};
    std::atomic<int> registered{0};
    std::vector<std::unique_ptr<Registration>> keep(kSlots);
    const std::uint64_t seed = seed_rng.next();

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        Rng rng{seed ^ (0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(t + 1))};
        for (int k = 0; k < kPerThread; ++k) {
          const int slot = t * kPerThread + k;
          const bool done_before = cancel_done.load();
          on_child[slot] = rng.below(2) == 0 ? 1 : 0;
          const CancellationToken token = on_child[slot] ? child.token() : parent.token();
          auto r = std::make_unique<Registration>(token, &runs[slot]);
          runs_after_construction[slot] = runs[slot].load();
          registered.fetch_add(1);
          if (done_before) {
            fate[slot] = 3;
            keep[slot] = std::move(r);
            continue;
          }
          if (rng.below(2) == 0) {
            fate[slot] = 0;
            keep[slot] = std::move(r);
          } else {
            pause_for(rng.below(200));
            r.reset();
            runs_when_destroyed[slot] = runs[slot].load();
            fate[slot] = cancel_started.load() ? 2 : 1;
          }
        }
      });
    }
    std::thread canceller([&] {
      Rng rng{seed};
      const int after = static_cast<int>(rng.below(kSlots));
      while (registered.load() < after) std::this_thread::yield();
      cancel_started.store(true);
      if (cancel_parent) parent.cancel();
      else child.cancel();
      cancel_done.store(true);
    });
    for (std::thread& t : threads) t.join();
    canceller.join();
    for (int slot = 0; slot < kSlots; ++slot) {
      const std::string where = "round " + std::to_string(round) + " callback " + std::to_string(slot);
      const int n = runs[slot].load();
      // Cancelling the parent cancels both; cancelling the child leaves the parent alone.
      const int expected = cancel_parent || on_child[slot] ? 1 : 0;
      if (n > 1) errors.add(where + ": ran " + std::to_string(n) + " times");
      switch (fate[slot]) {
        case 0:
          ++kept;
          if (n != expected)
            errors.add(where + ": kept registered through the cancel, ran " + std::to_string(n) +
                       " times, expected " + std::to_string(expected));
          break;
        case 1:
          if (n != 0) errors.add(where + ": destroyed before the cancel began, yet ran");
          break;
        case 2:
          if (n != runs_when_destroyed[slot])
            errors.add(where + ": ran after its destructor returned");
          break;
        case 3:
          ++kept;
          if (runs_after_construction[slot] != expected || n != expected)
            errors.add(where + ": registered after the cancel, ran " + std::to_string(n) +
                       " times (" + std::to_string(runs_after_construction[slot]) +
                       " in its constructor), expected " + std::to_string(expected));
          break;
        default:
          errors.add(where + ": never registered");
      }
      ran += n;
    }
    // The remaining registrations go away after the cancel; nothing runs again.
    for (auto& r : keep) r.reset();
    for (int slot = 0; slot < kSlots; ++slot)
      if (runs[slot].load() > 1) errors.add("round " + std::to_string(round) + ": a callback ran twice");
  }
  errors.report();
  std::printf("%ld callbacks run, %ld kept\n", ran, kept);
}

}  // namespace

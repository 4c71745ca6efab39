// Stress tests of TaskGroup's join protocol (task_group.hpp): children counted inline on the
// group's worker, stolen by other workers, spawned from foreign threads and from siblings,
// spawned while foreign work sits above them in the deque, and JoinHandles dropped on other
// threads while their tasks finish. No cancellation here (cancellation_stress_test.cpp covers
// it): every group must end exactly when its last child has, and count every child once.
//
// Invariants checked: every spawned task runs exactly once; a group returns only once every
// child of it has finished (its live count is zero at return, and nothing starts after);
// results read through kept handles add up; frames are freed exactly once (ASan).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "weft/weft.hpp"

namespace {

using weft::JoinHandle;
using weft::Runtime;
using weft::Task;
using weft::TaskGroup;
using weft_test::Rng;
using weft_test::kSanitized;

// Handles handed to a foreign thread, which drops them whenever it gets to them: before,
// while or after their tasks finish.
class HandleSink {
 public:
  HandleSink()
      : dropper_([this] {
          std::unique_lock<std::mutex> lock(mutex_);
          for (;;) {
            cv_.wait(lock, [&] { return stop_ || !handles_.empty(); });
            if (handles_.empty()) return;
            std::vector<JoinHandle<long>> batch;
            batch.swap(handles_);
            lock.unlock();
            batch.clear();  // the drops
            lock.lock();
          }
        }) {}
  ~HandleSink() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    dropper_.join();
  }
  void give(JoinHandle<long> h) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      handles_.push_back(std::move(h));
    }
    cv_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<JoinHandle<long>> handles_;
  bool stop_ = false;
  std::thread dropper_;
};

struct Totals {
  std::atomic<long> spawned{0};
  std::atomic<long> ran{0};
  std::atomic<long> late{0};  // a child that ended after its group had returned
  HandleSink* sink = nullptr;
};

struct Node {
  Totals* totals;
  std::atomic<int>* group_live;     // the live count of the group this node runs in
  std::atomic<bool>* group_done;    // set when that group has returned
  TaskGroup* group;                 // that group, for sibling spawns (null at the root)
  std::uint64_t seed;
  int depth;
};

Task<long> leaf(long v) { co_return v; }

Task<long> node(Node n);

// Spawns one child of `n`'s subtree into `tg` and decides what happens to its handle.
void spawn_child(TaskGroup& tg, Node child, Rng& rng, std::vector<JoinHandle<long>>& kept,
                 Totals& totals) {
  totals.spawned.fetch_add(1, std::memory_order_relaxed);
  JoinHandle<long> h = tg.spawn(node(child));
  switch (rng.below(4)) {
    case 0: break;  // dropped right away, before the child can have run
    case 1: totals.sink->give(std::move(h)); break;
    default: kept.push_back(std::move(h));
  }
}

// One node: a task_group whose body spawns 1-3 children (sometimes yielding, gathering or
// spawning into the parent's group between spawns), each child maybe spawning a sibling.
// Returns 1 + the sum of its kept children's results (checked against a recount).
Task<long> node(Node n) {
  n.group_live->fetch_add(1, std::memory_order_relaxed);
  n.totals->ran.fetch_add(1, std::memory_order_relaxed);
  Rng rng{n.seed};
  long sum = 1;
  if (n.depth > 0) {
    std::atomic<int> live{0};
    std::atomic<bool> done{false};
    std::vector<JoinHandle<long>> kept;
    co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
      const int children = 1 + static_cast<int>(rng.below(3));
      for (int i = 0; i < children; ++i) {
        Node child{n.totals, &live, &done, &tg, rng.next(), n.depth - 1};
        spawn_child(tg, child, rng, kept, *n.totals);
        switch (rng.below(8)) {
          case 0: co_await weft::this_task::yield(); break;  // the inline run settles
          case 1: {  // foreign work above the children in the deque, popped again
            auto [a, b] = co_await weft::safe_gather(leaf(1), leaf(2));
            if (a + b != 3) n.totals->late.fetch_add(1000000);
            break;
          }
          case 2:  // a sibling in the parent's group: foreign to this group's inline run
            if (n.group != nullptr && n.depth > 1) {
              Node uncle{n.totals, n.group_live, n.group_done, n.group, rng.next(), 0};
              n.totals->spawned.fetch_add(1, std::memory_order_relaxed);
              (void)n.group->spawn(node(uncle));
            }
            break;
          default: break;
        }
      }
      co_return;
    });
    done.store(true, std::memory_order_release);
    if (live.load(std::memory_order_acquire) != 0) n.totals->late.fetch_add(1);
    for (JoinHandle<long>& h : kept) {
      if (!h.done()) n.totals->late.fetch_add(1);
      sum += h.result();
    }
  } else if (n.group != nullptr && rng.below(4) == 0) {
    // A leaf that spawns a sibling into its own group (which is still waiting for it).
    Node sibling{n.totals, n.group_live, n.group_done, n.group, rng.next(), 0};
    n.totals->spawned.fetch_add(1, std::memory_order_relaxed);
    (void)n.group->spawn(node(sibling));
  }
  if (n.group_done->load(std::memory_order_acquire)) n.totals->late.fetch_add(1);
  n.group_live->fetch_sub(1, std::memory_order_release);
  co_return sum;
}

// Runs `rounds` random trees of groups; the exact invariant is ran == spawned (siblings and
// foreign drops make the tree's shape, and so its sum, unpredictable).
void run_rounds(unsigned workers, int rounds, int depth) {
  Runtime rt({.workers = workers});
  HandleSink sink;
  Totals totals;
  totals.sink = &sink;
  Rng rng{0x9e3779b97f4a7c15ULL + workers};
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> live{0};
    std::atomic<bool> done{false};
    totals.spawned.fetch_add(1);
    const long r = rt.block_on(node(Node{&totals, &live, &done, nullptr, rng.next(), depth}));
    done.store(true);
    EXPECT_GE(r, 1);
  }
  EXPECT_EQ(totals.ran.load(), totals.spawned.load()) << "a spawned task ran twice or never";
  EXPECT_EQ(totals.late.load(), 0) << "a child ended after its group had returned";
  std::printf("%u workers: %ld tasks\n", workers, totals.ran.load());
}

TEST(TaskGroupStress, OneWorkerCountsEveryChildOnceWithChildrenRunInline) {
  run_rounds(1, kSanitized ? 100 : 2000, 7);
}

TEST(TaskGroupStress, StolenChildrenAndForeignHandleDropsCountEveryChildOnce) {
  run_rounds(4, kSanitized ? 100 : 2000, 7);
}

// A foreign thread spawns into a group while its body spawns and its children run inline on a
// worker: the body waits until every foreign spawn was accepted, and the group then awaits
// each of them.
TEST(TaskGroupStress, ForeignSpawnsIntoAGroupRunningInlineAreAwaited) {
  Runtime rt({.workers = 2});
  const int rounds = kSanitized ? 50 : 500;
  constexpr int kForeign = 50;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<int> ran{0};
    std::atomic<int> accepted{0};
    std::atomic<bool> group_ended{false};
    std::atomic<int> late{0};
    auto child = [](std::atomic<int>* ran, std::atomic<bool>* ended,
                    std::atomic<int>* late) -> Task<void> {
      if (ended->load(std::memory_order_acquire)) late->fetch_add(1);
      ran->fetch_add(1);
      co_return;
    };
    rt.block_on([](decltype(child)& child, std::atomic<int>& ran, std::atomic<int>& accepted,
                   std::atomic<bool>& ended, std::atomic<int>& late) -> Task<void> {
      weft::Event all_in;
      co_await weft::task_group([&](TaskGroup& tg) -> Task<void> {
        // The foreign thread's spawns land while the body is still inline, then while it
        // waits for the last of them.
        std::thread foreign([&] {
          for (int i = 0; i < kForeign; ++i) {
            (void)tg.spawn(child(&ran, &ended, &late));
            accepted.fetch_add(1);
          }
          all_in.set();
        });
        for (int i = 0; i < 20; ++i) (void)tg.spawn(child(&ran, &ended, &late));
        co_await all_in.wait();
        foreign.join();
      });
      ended.store(true, std::memory_order_release);
      if (ran.load() != 20 + accepted.load()) late.fetch_add(1000);
    }(child, ran, accepted, group_ended, late));
    ASSERT_EQ(late.load(), 0) << "round " << round;
    ASSERT_EQ(ran.load(), 20 + kForeign);
  }
}

}  // namespace

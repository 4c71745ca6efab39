// weft_bench_queue: the cost of Lock, Queue<T> and, beside them in the same binary, Semaphore.
//
//   uncontended  one task on a 1-worker runtime, in a loop (kOpsPerRun pairs per iteration):
//                SemaphoreAcquireRelease  co_await acquire() + the permit's release
//                LockUnlock               co_await lock() + the guard's unlock
//                QueueTryPushTryPop       try_push() + try_pop() on a Queue<int>(64)
//                QueuePushPop             co_await push() + co_await pop() (never parks)
//                Each reports ns_per_pair; compare them within one run (SPEC §11's target:
//                lock+unlock and try_push+try_pop within 1.3x of acquire+release).
//   throughput   Queue<int>(kCapacity): P producer tasks push kItems items in all, C consumer
//                tasks pop until the queue is closed, on a runtime of `workers` workers
//                (co_await push/pop: they park when full or empty). Beside it, the same shape
//                with tbb::concurrent_bounded_queue<int> (same capacity) from P + C plain
//                threads (only when built with oneTBB: WEFT_BENCH_HAVE_TBB). Reports
//                ns_per_item and items_per_s.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstddef>
#include <optional>
#include <thread>
#include <vector>

#include "bench_common.hpp"

#ifdef WEFT_BENCH_HAVE_TBB
#include <oneapi/tbb/concurrent_queue.h>
#endif

namespace {

using weft::Task;

constexpr int kOpsPerRun = 1'000'000;

// ----------------------------------------------------------------------------------------------
// Uncontended

Task<long> semaphore_loop(weft::Semaphore& sem, int pairs) {
  long n = 0;
  for (int i = 0; i < pairs; ++i) {
    weft::SemaphorePermit p = co_await sem.acquire();
    n += static_cast<long>(p.count());
  }
  co_return n;
}

Task<long> lock_loop(weft::Lock& lock, int pairs) {
  long n = 0;
  for (int i = 0; i < pairs; ++i) {
    weft::LockGuard g = co_await lock.lock();
    n += g.owns_lock() ? 1 : 0;
  }
  co_return n;
}

Task<long> try_push_pop_loop(weft::Queue<int>& q, int pairs) {
  long n = 0;
  for (int i = 0; i < pairs; ++i) {
    int v = i;
    if (q.try_push(v)) n += q.try_pop().value_or(0) == i ? 1 : 0;
  }
  co_return n;
}

Task<long> push_pop_loop(weft::Queue<int>& q, int pairs) {
  long n = 0;
  for (int i = 0; i < pairs; ++i) {
    co_await q.push(int{i});
    std::optional<int> v = co_await q.pop();
    n += v.value_or(-1) == i ? 1 : 0;
  }
  co_return n;
}

template <class Loop>
void run_uncontended(benchmark::State& state, Loop loop) {
  weft::Runtime& rt = weft_bench::runtime_for(1);
  rt.block_on(loop(1000));  // warm up
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    if (rt.block_on(loop(kOpsPerRun)) != kOpsPerRun) state.SkipWithError("a pair failed");
  }
  weft_bench::set_ns_per(state, "ns_per_pair", watch.elapsed_ns(), kOpsPerRun);
}

void BM_UncontendedSemaphoreAcquireRelease(benchmark::State& state) {
  weft::Semaphore sem(4);
  run_uncontended(state, [&](int pairs) { return semaphore_loop(sem, pairs); });
}
void BM_UncontendedLockUnlock(benchmark::State& state) {
  weft::Lock lock;
  run_uncontended(state, [&](int pairs) { return lock_loop(lock, pairs); });
}
void BM_UncontendedQueueTryPushTryPop(benchmark::State& state) {
  weft::Queue<int> q(64);
  run_uncontended(state, [&](int pairs) { return try_push_pop_loop(q, pairs); });
}
void BM_UncontendedQueuePushPop(benchmark::State& state) {
  weft::Queue<int> q(64);
  run_uncontended(state, [&](int pairs) { return push_pop_loop(q, pairs); });
}
BENCHMARK(BM_UncontendedSemaphoreAcquireRelease)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UncontendedLockUnlock)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UncontendedQueueTryPushTryPop)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UncontendedQueuePushPop)->UseRealTime()->Unit(benchmark::kMillisecond);

// ----------------------------------------------------------------------------------------------
// Throughput

constexpr std::size_t kCapacity = 64;
constexpr int kItems = 400'000;

void throughput_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"producers", "consumers", "workers"});
  b->Args({1, 1, 2});
  b->Args({4, 4, 2});
  if (weft_bench::max_workers() >= 4) b->Args({4, 4, 4});
}

Task<void> produce(weft::Queue<int>& q, int from, int to, std::atomic<int>& producers_left) {
  for (int i = from; i < to; ++i) co_await q.push(int{i});
  if (producers_left.fetch_sub(1, std::memory_order_acq_rel) == 1) q.close();
}

Task<long> consume(weft::Queue<int>& q) {
  long sum = 0;
  while (std::optional<int> v = co_await q.pop()) sum += *v;
  co_return sum;
}

Task<long> run_weft_queue(int producers, int consumers) {
  weft::Queue<int> q(kCapacity);
  std::atomic<int> producers_left{producers};
  std::vector<Task<void>> ps;
  for (int p = 0; p < producers; ++p)
    ps.push_back(produce(q, kItems / producers * p, kItems / producers * (p + 1), producers_left));
  std::vector<Task<long>> cs;
  for (int c = 0; c < consumers; ++c) cs.push_back(consume(q));
  auto [unused, sums] =
      co_await weft::safe_gather(weft::safe_gather(std::move(ps)), weft::safe_gather(std::move(cs)));
  (void)unused;
  long total = 0;
  for (long s : sums) total += s;
  co_return total;
}

constexpr long expected_sum() { return static_cast<long>(kItems) * (kItems - 1) / 2; }

void report_throughput(benchmark::State& state, double elapsed_ns) {
  weft_bench::set_ns_per(state, "ns_per_item", elapsed_ns, kItems);
  state.counters["items_per_s"] = benchmark::Counter(
      static_cast<double>(kItems) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

void BM_QueueThroughputWeft(benchmark::State& state) {
  const int producers = static_cast<int>(state.range(0));
  const int consumers = static_cast<int>(state.range(1));
  weft::Runtime& rt = weft_bench::runtime_for(static_cast<unsigned>(state.range(2)));
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    if (rt.block_on(run_weft_queue(producers, consumers)) != expected_sum())
      state.SkipWithError("lost or duplicated an item");
  }
  report_throughput(state, watch.elapsed_ns());
}
BENCHMARK(BM_QueueThroughputWeft)->Apply(throughput_args)->UseRealTime()->Unit(benchmark::kMillisecond);

#ifdef WEFT_BENCH_HAVE_TBB
// The same shape with oneTBB's blocking bounded queue and plain threads (P + C of them: the
// `workers` argument does not apply, the OS schedules them). A sentinel per consumer ends it.
long run_tbb_queue(int producers, int consumers) {
  tbb::concurrent_bounded_queue<int> q;
  q.set_capacity(static_cast<std::ptrdiff_t>(kCapacity));
  std::atomic<long> total{0};
  std::atomic<int> producers_left{producers};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&, p] {
      for (int i = kItems / producers * p; i < kItems / producers * (p + 1); ++i) q.push(i);
      if (producers_left.fetch_sub(1) == 1)
        for (int c = 0; c < consumers; ++c) q.push(-1);
    });
  for (int c = 0; c < consumers; ++c)
    threads.emplace_back([&] {
      long sum = 0;
      int v = 0;
      for (q.pop(v); v >= 0; q.pop(v)) sum += v;
      total.fetch_add(sum);
    });
  for (std::thread& t : threads) t.join();
  return total.load();
}

void BM_QueueThroughputTbbBoundedQueue(benchmark::State& state) {
  const int producers = static_cast<int>(state.range(0));
  const int consumers = static_cast<int>(state.range(1));
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    if (run_tbb_queue(producers, consumers) != expected_sum())
      state.SkipWithError("lost or duplicated an item");
  }
  report_throughput(state, watch.elapsed_ns());
}
BENCHMARK(BM_QueueThroughputTbbBoundedQueue)
    ->Apply(throughput_args)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace

BENCHMARK_MAIN();

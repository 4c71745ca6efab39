// The cost of Semaphore::acquire + release.
//
//   uncontended  one task on a 1-worker runtime: co_await acquire() then release, in a loop.
//                The lock-free path: the pull cancellation check and two CASes.
//   try_acquire  the same through try_acquire() (no coroutine suspension point at all).
//   contended    kContenders tasks per worker on 2..N workers, each looping acquire + release
//                on one Semaphore of `permits` permits: the workers fight over the state
//                word's cache line, and acquires that find it taken queue (locked path).
//   queued       the same on any number of workers, but each task holds its permit across a
//                this_task::yield(), so that the other tasks find the permits taken: nearly
//                every acquire parks and is resumed by a grant (the locked path, a hand-off
//                and the yield's re-queue; yield_only is that loop without the semaphore).
// Each reports ns_per_pair: wall time of the timed loop / acquire+release pairs.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include "bench_common.hpp"

namespace {

using weft::Semaphore;
using weft::SemaphorePermit;
using weft::Task;

constexpr int kPairsPerRun = 1'000'000;

Task<long> acquire_release_loop(Semaphore& sem, int pairs) {
  long taken = 0;
  for (int i = 0; i < pairs; ++i) {
    SemaphorePermit p = co_await sem.acquire();
    taken += static_cast<long>(p.count());
  }
  co_return taken;
}

void BM_SemaphoreUncontended(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(1);
  Semaphore sem(4);
  rt.block_on(acquire_release_loop(sem, 1000));  // warm up
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    const long taken = rt.block_on(acquire_release_loop(sem, kPairsPerRun));
    if (taken != kPairsPerRun) state.SkipWithError("lost a permit");
  }
  weft_bench::set_ns_per(state, "ns_per_pair", watch.elapsed_ns(), kPairsPerRun);
}
BENCHMARK(BM_SemaphoreUncontended)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_SemaphoreTryAcquireUncontended(benchmark::State& state) {
  Semaphore sem(4);
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    for (int i = 0; i < kPairsPerRun; ++i) {
      std::optional<SemaphorePermit> p = sem.try_acquire();
      benchmark::DoNotOptimize(p);
    }
  }
  weft_bench::set_ns_per(state, "ns_per_pair", watch.elapsed_ns(), kPairsPerRun);
}
BENCHMARK(BM_SemaphoreTryAcquireUncontended)->UseRealTime()->Unit(benchmark::kMillisecond);

constexpr int kContenders = 8;           // tasks per worker
constexpr int kPairsPerContender = 20'000;

Task<long> hold_across_yield_loop(Semaphore* sem, int pairs) {
  long taken = 0;
  for (int i = 0; i < pairs; ++i) {
    if (sem == nullptr) {
      co_await weft::this_task::yield();
      ++taken;
      continue;
    }
    SemaphorePermit p = co_await sem->acquire();
    co_await weft::this_task::yield();
    taken += static_cast<long>(p.count());
  }
  co_return taken;
}

enum class Shape { kBackToBack, kHoldAcrossYield, kYieldOnly };

Task<void> contend(Semaphore& sem, unsigned tasks, int pairs, Shape shape) {
  std::vector<Task<long>> loops;
  loops.reserve(tasks);
  for (unsigned t = 0; t < tasks; ++t) {
    switch (shape) {
      case Shape::kBackToBack: loops.push_back(acquire_release_loop(sem, pairs)); break;
      case Shape::kHoldAcrossYield: loops.push_back(hold_across_yield_loop(&sem, pairs)); break;
      case Shape::kYieldOnly: loops.push_back(hold_across_yield_loop(nullptr, pairs)); break;
    }
  }
  co_await weft::safe_gather(std::move(loops));
}

// Args: {workers, permits}.
void run_contended(benchmark::State& state, Shape shape, int pairs) {
  const auto workers = static_cast<unsigned>(state.range(0));
  weft::Runtime& rt = weft_bench::runtime_for(workers);
  Semaphore sem(static_cast<std::size_t>(state.range(1)));
  const unsigned tasks = workers * kContenders;
  weft_bench::Stopwatch watch;
  for (auto _ : state) rt.block_on(contend(sem, tasks, pairs, shape));
  if (sem.available() != sem.capacity()) state.SkipWithError("lost a permit");
  weft_bench::set_ns_per(state, "ns_per_pair", watch.elapsed_ns(),
                         static_cast<double>(tasks) * pairs);
}

void contended_args(benchmark::internal::Benchmark* b, unsigned min_workers) {
  b->ArgNames({"workers", "permits"});
  for (unsigned w = min_workers; w <= weft_bench::max_workers(); ++w)
    for (int permits : {1, 4}) b->Args({static_cast<long>(w), permits});
}

constexpr int kQueuedPairsPerContender = 2'000;

void BM_SemaphoreContended(benchmark::State& state) {
  run_contended(state, Shape::kBackToBack, kPairsPerContender);
}
void BM_SemaphoreQueued(benchmark::State& state) {
  run_contended(state, Shape::kHoldAcrossYield, kQueuedPairsPerContender);
}
void BM_SemaphoreQueuedBaselineYieldOnly(benchmark::State& state) {
  run_contended(state, Shape::kYieldOnly, kQueuedPairsPerContender);
}
BENCHMARK(BM_SemaphoreContended)
    ->Apply([](benchmark::internal::Benchmark* b) { contended_args(b, 2); })
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SemaphoreQueued)
    ->Apply([](benchmark::internal::Benchmark* b) { contended_args(b, 1); })
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SemaphoreQueuedBaselineYieldOnly)
    ->Apply([](benchmark::internal::Benchmark* b) { contended_args(b, 1); })
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

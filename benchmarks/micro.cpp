// weft_bench_micro: the cost of weft's basic operations.
//
//   spawn_join/vector/workers:W/children:N   a task gathers N trivial children (vector form),
//                                            many times per block_on: ns_per_child
//   spawn_join/tuple2, spawn_join/tuple10    the same with the variadic form (2 and 10 children)
//   steal/children:N                         a 2-worker runtime: one worker runs a gather whose
//                                            first child spins until the N others are done, so
//                                            each of them must be stolen by the other worker:
//                                            ns_per_stolen_task, steals_per_task
//   block_on/workers:W                       block_on(trivial task) from the main thread, back
//                                            to back (workers still searching, not parked)
//   submit_latency/parked/workers:W          submit -> first instruction of the task, measured
//                                            with steady_clock, each sample taken once every
//                                            worker has parked (includes the futex wake-up)
//   submit_latency/busy/workers:W            the same, submitted right after the previous
//                                            task ended (workers still searching)
//                                            Counters p50_us, p99_us, max_us (time = mean).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "bench_common.hpp"

namespace {

using weft::Task;
using weft::safe_gather;
using weft_bench::runtime_for;
using Clock = std::chrono::steady_clock;

Task<int> trivial() { co_return 1; }
Task<void> nothing() { co_return; }

// ---------------------------------------------------------------------------------------------
// spawn + join
// ---------------------------------------------------------------------------------------------
constexpr long kChildrenPerIteration = 1 << 16;

Task<long> gather_vector_rounds(long rounds, int n) {
  long sum = 0;
  for (long r = 0; r < rounds; ++r) {
    std::vector<Task<int>> children;
    children.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) children.push_back(trivial());
    for (int v : co_await safe_gather(std::move(children))) sum += v;
  }
  co_return sum;
}

template <std::size_t... I>
auto gather_tuple(std::index_sequence<I...>) {
  return safe_gather(((void)I, trivial())...);
}

template <std::size_t N>
Task<long> gather_tuple_rounds(long rounds) {
  long sum = 0;
  for (long r = 0; r < rounds; ++r) {
    auto results = co_await gather_tuple(std::make_index_sequence<N>{});
    sum += std::apply([](auto... v) { return (v + ...); }, results);
  }
  co_return sum;
}

void report_runtime_counters(benchmark::State& state, weft::Runtime& rt,
                             const weft::WorkerStats& before, std::uint64_t heap_before,
                             double units_per_iteration, const char* per) {
  const weft::WorkerStats after = rt.stats().total();
  const double units = units_per_iteration * static_cast<double>(state.iterations());
  if (units <= 0) return;
  state.counters[std::string("heap_allocs_per_") + per] =
      static_cast<double>(weft::detail::frame_heap_allocations() - heap_before) / units;
  state.counters[std::string("steals_per_") + per] =
      static_cast<double>(after.steals - before.steals) / units;
}

void bm_spawn_join_vector(benchmark::State& state) {
  weft::Runtime& rt = runtime_for(static_cast<unsigned>(state.range(0)));
  const int n = static_cast<int>(state.range(1));
  const long rounds = kChildrenPerIteration / n;
  const long expected = rounds * n;
  if (rt.block_on(gather_vector_rounds(rounds, n)) != expected)
    return state.SkipWithError("wrong result");
  const weft::WorkerStats before = rt.stats().total();
  const std::uint64_t heap_before = weft::detail::frame_heap_allocations();
  const weft_bench::Stopwatch watch;
  for (auto _ : state) {
    if (rt.block_on(gather_vector_rounds(rounds, n)) != expected) {
      state.SkipWithError("wrong result");
      break;
    }
  }
  const double children = static_cast<double>(expected);
  weft_bench::set_ns_per(state, "ns_per_child", watch.elapsed_ns(), children);
  report_runtime_counters(state, rt, before, heap_before, children, "child");
}

template <std::size_t N>
void bm_spawn_join_tuple(benchmark::State& state) {
  weft::Runtime& rt = runtime_for(static_cast<unsigned>(state.range(0)));
  const long rounds = kChildrenPerIteration / static_cast<long>(N);
  const long expected = rounds * static_cast<long>(N);
  if (rt.block_on(gather_tuple_rounds<N>(rounds)) != expected)
    return state.SkipWithError("wrong result");
  const weft::WorkerStats before = rt.stats().total();
  const std::uint64_t heap_before = weft::detail::frame_heap_allocations();
  const weft_bench::Stopwatch watch;
  for (auto _ : state) {
    if (rt.block_on(gather_tuple_rounds<N>(rounds)) != expected) {
      state.SkipWithError("wrong result");
      break;
    }
  }
  const double children = static_cast<double>(expected);
  weft_bench::set_ns_per(state, "ns_per_child", watch.elapsed_ns(), children);
  report_runtime_counters(state, rt, before, heap_before, children, "child");
}

// ---------------------------------------------------------------------------------------------
// steal: every child but the first must be run by the other worker.
// ---------------------------------------------------------------------------------------------
// Busy-waits (keeping its worker away from its own deque) until `target` children are done.
// Yields the CPU after a while, so that a machine with other load does not leave the thief
// waiting for a whole time slice.
Task<void> spin_until(const std::atomic<int>& done, int target) {
  for (unsigned spins = 0; done.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < (1u << 14)) weft_bench::cpu_relax();
    else std::this_thread::yield();
  }
  co_return;
}
Task<void> count_done(std::atomic<int>& done) {
  done.fetch_add(1, std::memory_order_release);
  co_return;
}

Task<long> steal_rounds(long rounds, int n) {
  long finished = 0;
  for (long r = 0; r < rounds; ++r) {
    std::atomic<int> done{0};
    std::vector<Task<void>> children;
    children.reserve(static_cast<std::size_t>(n) + 1);
    children.push_back(spin_until(done, n));  // runs inline on this worker and blocks it
    for (int i = 0; i < n; ++i) children.push_back(count_done(done));
    co_await safe_gather(std::move(children));
    finished += done.load(std::memory_order_relaxed);
  }
  co_return finished;
}

void bm_steal(benchmark::State& state) {
  if (weft_bench::max_workers() < 2) return state.SkipWithError("needs 2 hardware threads");
  weft::Runtime& rt = runtime_for(2);
  const int n = static_cast<int>(state.range(0));
  const long rounds = std::max(1L, 16384L / n);
  const long expected = rounds * n;
  if (rt.block_on(steal_rounds(rounds, n)) != expected) return state.SkipWithError("wrong result");
  const weft::WorkerStats before = rt.stats().total();
  const std::uint64_t heap_before = weft::detail::frame_heap_allocations();
  const weft_bench::Stopwatch watch;
  for (auto _ : state) {
    if (rt.block_on(steal_rounds(rounds, n)) != expected) {
      state.SkipWithError("wrong result");
      break;
    }
  }
  const double stolen = static_cast<double>(expected);
  weft_bench::set_ns_per(state, "ns_per_stolen_task", watch.elapsed_ns(), stolen);
  report_runtime_counters(state, rt, before, heap_before, stolen, "task");
}

// ---------------------------------------------------------------------------------------------
// block_on round trip
// ---------------------------------------------------------------------------------------------
void bm_block_on(benchmark::State& state) {
  weft::Runtime& rt = runtime_for(static_cast<unsigned>(state.range(0)));
  rt.block_on(nothing());
  const weft::WorkerStats before = rt.stats().total();
  const std::uint64_t heap_before = weft::detail::frame_heap_allocations();
  for (auto _ : state) rt.block_on(nothing());
  const weft::WorkerStats after = rt.stats().total();
  const double iters = static_cast<double>(state.iterations());
  if (iters > 0) {
    state.counters["heap_allocs_per_op"] =
        static_cast<double>(weft::detail::frame_heap_allocations() - heap_before) / iters;
    state.counters["parks_per_op"] = static_cast<double>(after.parks - before.parks) / iters;
  }
}

// ---------------------------------------------------------------------------------------------
// submit -> start latency
// ---------------------------------------------------------------------------------------------
Task<void> record_start(Clock::time_point* started) {
  *started = Clock::now();
  co_return;
}

// Waits until every worker has gone to sleep: the park counter has grown since `parks_before`
// (the worker that ran the last task parks after its search) and then stays unchanged for
// 2 ms (a searching worker parks within about 30 us). Gives up after 100 ms.
void wait_until_parked(weft::Runtime& rt, std::uint64_t parks_before) {
  const auto give_up = Clock::now() + std::chrono::milliseconds(100);
  std::uint64_t last = rt.stats().total().parks;
  auto stable_since = Clock::now();
  while (Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    const std::uint64_t now = rt.stats().total().parks;
    if (now != last) {
      last = now;
      stable_since = Clock::now();
    } else if (last > parks_before && Clock::now() - stable_since >= std::chrono::milliseconds(2)) {
      return;
    }
  }
}

template <bool Parked>
void bm_submit_latency(benchmark::State& state) {
  weft::Runtime& rt = runtime_for(static_cast<unsigned>(state.range(0)));
  std::vector<double> samples_us;
  samples_us.reserve(static_cast<std::size_t>(state.max_iterations));
  rt.block_on(nothing());
  if (Parked) wait_until_parked(rt, 0);
  for (auto _ : state) {
    const std::uint64_t parks = rt.stats().total().parks;
    Clock::time_point started{};
    const Clock::time_point submitted = Clock::now();
    weft::Future<void> f = rt.submit(record_start(&started));
    f.get();
    const double us = std::chrono::duration<double, std::micro>(started - submitted).count();
    state.SetIterationTime(us * 1e-6);
    samples_us.push_back(us);
    if (Parked) wait_until_parked(rt, parks);
  }
  if (samples_us.empty()) return;
  std::sort(samples_us.begin(), samples_us.end());
  const auto at = [&](double p) {
    const auto i = static_cast<std::size_t>(p * static_cast<double>(samples_us.size() - 1));
    return samples_us[i];
  };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = samples_us.back();
  state.counters["samples"] = static_cast<double>(samples_us.size());
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const unsigned hw = weft_bench::max_workers();

  auto* vec = benchmark::RegisterBenchmark("spawn_join/vector", bm_spawn_join_vector)
                  ->ArgNames({"workers", "children"})
                  ->UseRealTime();
  for (unsigned w = 1; w <= hw; ++w)
    for (int n : {2, 16, 256}) vec->Args({static_cast<long>(w), n});
  weft_bench::sweep_workers(
      benchmark::RegisterBenchmark("spawn_join/tuple2", bm_spawn_join_tuple<2>)->UseRealTime());
  weft_bench::sweep_workers(
      benchmark::RegisterBenchmark("spawn_join/tuple10", bm_spawn_join_tuple<10>)->UseRealTime());

  benchmark::RegisterBenchmark("steal", bm_steal)
      ->ArgName("children")
      ->Arg(16)
      ->Arg(256)
      ->UseRealTime();

  weft_bench::sweep_workers(
      benchmark::RegisterBenchmark("block_on", bm_block_on)->UseRealTime()->Unit(benchmark::kMicrosecond));

  weft_bench::sweep_workers(benchmark::RegisterBenchmark("submit_latency/busy",
                                                       bm_submit_latency<false>)
                                ->UseManualTime()
                                ->Unit(benchmark::kMicrosecond)
                                ->Iterations(5000));
  weft_bench::sweep_workers(benchmark::RegisterBenchmark("submit_latency/parked",
                                                       bm_submit_latency<true>)
                                ->UseManualTime()
                                ->Unit(benchmark::kMicrosecond)
                                ->Iterations(400));

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

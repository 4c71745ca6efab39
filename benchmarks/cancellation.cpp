// The cost of weft's structured primitives, and how fast cancellation travels.
//
//   fib/TaskGroup      fib(n) with one TaskGroup::spawn per call (JoinHandle results), against
//                      the same recursion through safe_gather, side by side: ns per task.
//   latency/parked     10,000 children of one task_group parked on an Event; one more child
//                      fails: time from the failure to task_group returning (ExceptionGroup).
//   latency/checkpoint children spinning on CPU work with a checkpoint() about every
//                      microsecond; the group is cancelled from another thread: time from
//                      cancel() to the group's caller catching Cancelled.
//   memory/million_children  a group whose body spawns 1,000,000 short children, dropping each
//                      handle, and suspends after each spawn (as an accept loop awaits its next
//                      connection): peak_rss_growth_mib (the process's peak RSS during the group
//                      minus the RSS before it; target under 64 MiB), bytes_per_child, wall_s.
//                      The group holds memory only for children not yet finished.
//   memory/million_children_spawned_at_once  the same body without the suspension: every
//                      child is queued before most run, so their frames are all held at once
//                      (the measurement's check: this one must grow).
// Latencies are reported as counters in microseconds (median and max over the iterations).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace std::chrono;
using weft::Task;

std::uint64_t fib_calls(int n) {
  std::uint64_t a = 1, b = 1;  // calls(0) = calls(1) = 1; calls(n) = 1 + calls(n-1) + calls(n-2)
  for (int i = 2; i <= n; ++i) {
    const std::uint64_t c = 1 + a + b;
    a = b;
    b = c;
  }
  return n < 1 ? 1 : b;
}

Task<long> fib_gather(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await weft::safe_gather(fib_gather(n - 1), fib_gather(n - 2));
  co_return a + b;
}

// The asyncio.TaskGroup shape: spawn in the group's body, read the handles after it ended.
Task<long> fib_group(int n) {
  if (n < 2) co_return n;
  std::optional<weft::JoinHandle<long>> a, b;
  co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
    a.emplace(tg.spawn(fib_group(n - 1)));
    b.emplace(tg.spawn(fib_group(n - 2)));
    co_return;
  });
  co_return a->result() + b->result();
}

constexpr int kFibN = 30;

void run_fib(benchmark::State& state, Task<long> (*fib)(int)) {
  weft::Runtime& rt = weft_bench::runtime_for(static_cast<unsigned>(state.range(0)));
  rt.block_on(fib(20));  // warm the frame caches
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    const long r = rt.block_on(fib(kFibN));
    if (r != 832040) state.SkipWithError("wrong fib result");
  }
  weft_bench::set_ns_per(state, "ns_per_task", watch.elapsed_ns(),
                         static_cast<double>(fib_calls(kFibN)));
}

void BM_FibSafeGather(benchmark::State& state) { run_fib(state, &fib_gather); }
void BM_FibTaskGroup(benchmark::State& state) { run_fib(state, &fib_group); }
BENCHMARK(BM_FibSafeGather)->Apply([](auto* b) { weft_bench::sweep_workers(b); })->UseRealTime();
BENCHMARK(BM_FibTaskGroup)->Apply([](auto* b) { weft_bench::sweep_workers(b); })->UseRealTime();

struct LatencyStats {
  std::vector<double> samples_us;
  void report(benchmark::State& state) {
    if (samples_us.empty()) return;
    std::sort(samples_us.begin(), samples_us.end());
    state.counters["p50_us"] = samples_us[samples_us.size() / 2];
    state.counters["p90_us"] = samples_us[samples_us.size() * 9 / 10];
    state.counters["max_us"] = samples_us.back();
  }
};

constexpr int kParkedChildren = 10'000;

// Children are spawned from lambdas that live in the enclosing coroutine's frame, which
// outlives the group (a lambda coroutine reads its captures through the lambda object).

// One iteration: spawn kParkedChildren waiters, wait until they are all parked, then a child
// fails; measure from the throw to task_group returning.
void BM_CancellationLatencyParked(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(static_cast<unsigned>(state.range(0)));
  LatencyStats stats;
  for (auto _ : state) {
    weft::Event never;
    std::atomic<int> parked{0};
    std::atomic<steady_clock::time_point::rep> failed_at{0};
    auto wait_forever = [&]() -> Task<void> {
      parked.fetch_add(1, std::memory_order_relaxed);
      co_await never.wait();
    };
    auto fail_when_all_parked = [&]() -> Task<void> {
      // Their count is bumped just before parking; the extra yields let the last ones park.
      while (parked.load(std::memory_order_relaxed) < kParkedChildren)
        co_await weft::this_task::yield();
      for (int i = 0; i < 100; ++i) co_await weft::this_task::yield();
      failed_at.store(steady_clock::now().time_since_epoch().count());
      throw std::runtime_error("one child fails");
    };
    auto group = [&]() -> Task<steady_clock::time_point> {
      try {
        co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
          for (int i = 0; i < kParkedChildren; ++i) (void)tg.spawn(wait_forever());
          (void)tg.spawn(fail_when_all_parked());
          co_return;
        });
      } catch (const weft::ExceptionGroup&) {
      }
      co_return steady_clock::now();
    };
    const auto returned = rt.block_on(group());
    const auto failed = steady_clock::time_point(steady_clock::duration(failed_at.load()));
    stats.samples_us.push_back(duration<double, std::micro>(returned - failed).count());
  }
  stats.report(state);
}
BENCHMARK(BM_CancellationLatencyParked)->Arg(2)->Arg(1)->Iterations(20)->UseRealTime()->Unit(benchmark::kMillisecond);

// CPU-bound children: one per worker, each spinning on ~1 us slices of work with a
// checkpoint() between them (which does not yield: nothing else can run meanwhile). The group
// is cancelled from the benchmark's thread once both spin; measured from cancel() to the
// group's caller catching Cancelled.
void BM_CancellationLatencyCheckpoint(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(2);
  LatencyStats stats;
  for (auto _ : state) {
    std::atomic<int> running{0};
    std::atomic<steady_clock::time_point::rep> returned_at{0};
    weft::CancellationSource source;
    auto spin = [&]() -> Task<void> {
      running.fetch_add(1);
      for (;;) {
        const auto until = steady_clock::now() + microseconds(1);
        while (steady_clock::now() < until) weft_bench::cpu_relax();
        co_await weft::this_task::checkpoint();
      }
    };
    auto group = [&]() -> Task<void> {
      co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
        (void)tg.spawn(spin());
        (void)tg.spawn(spin());
        co_return;
      });
    };
    auto root = [&]() -> Task<void> {
      try {
        co_await weft::with_cancellation(source.token(), group());
      } catch (const weft::Cancelled&) {
        returned_at.store(steady_clock::now().time_since_epoch().count());
      }
    };
    weft::Future<void> done = rt.submit(root());
    while (running.load() < 2) std::this_thread::yield();
    const auto cancelled = steady_clock::now();
    source.cancel();
    done.get();
    const auto returned = steady_clock::time_point(steady_clock::duration(returned_at.load()));
    stats.samples_us.push_back(duration<double, std::micro>(returned - cancelled).count());
  }
  stats.report(state);
}
BENCHMARK(BM_CancellationLatencyCheckpoint)->Iterations(50)->UseRealTime()->Unit(benchmark::kMicrosecond);

constexpr int kShortChildren = 1'000'000;

// A short child: a little work, one suspension (so children overlap), a result nobody reads.
Task<long> short_child(long i) {
  co_await weft::this_task::yield();
  co_return i * 3;
}

// `accept_loop`: the body suspends after each spawn; otherwise it spawns all of them at once.
void BM_GroupOfAMillionShortChildren(benchmark::State& state, bool accept_loop) {
  weft::Runtime& rt = weft_bench::runtime_for(static_cast<unsigned>(state.range(0)));
  for (auto _ : state) {
    const bool peak_reset = weft_bench::reset_peak_rss();
    const double rss_before = weft_bench::rss_bytes();
    const auto start = steady_clock::now();
    rt.block_on(weft::task_group([accept_loop](weft::TaskGroup& tg) -> Task<void> {
      for (long i = 0; i < kShortChildren; ++i) {
        tg.spawn(short_child(i));  // the handle is dropped at once
        // The accept loop waits for its next connection.
        if (accept_loop) co_await weft::this_task::yield();
      }
    }));
    const double wall = duration<double>(steady_clock::now() - start).count();
    const double growth = weft_bench::peak_rss_bytes() - rss_before;
    state.counters["peak_rss_growth_mib"] = growth / (1024.0 * 1024.0);
    state.counters["bytes_per_child"] = growth / kShortChildren;
    state.counters["wall_s"] = wall;
    state.counters["peak_reset"] = peak_reset ? 1 : 0;
  }
}
BENCHMARK_CAPTURE(BM_GroupOfAMillionShortChildren, accept_loop, true)
    ->Name("memory/million_children")
    ->Apply([](auto* b) { weft_bench::sweep_workers(b); })
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GroupOfAMillionShortChildren, all_at_once, false)
    ->Name("memory/million_children_spawned_at_once")
    ->Apply([](auto* b) { weft_bench::sweep_workers(b); })
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

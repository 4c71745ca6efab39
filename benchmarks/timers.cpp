// Timers: how late they fire, what a sleeper costs, what a timeout costs.
//
//   lateness/sleepers:N   N tasks on an idle 2-worker runtime each sleep_until() a deadline
//                         1-5 ms ahead, 100 rounds per iteration; lateness = the time the task
//                         resumed minus its deadline. Counters p50_us, p99_us, max_us (target:
//                         p99 under 1 ms). lateness_os_thread: the same for a plain thread's
//                         std::this_thread::sleep_until(), the floor under the same load.
//   million_sleepers      1,000,000 concurrent sleep_for(1 s + up to 100 ms) tasks in one
//                         vector safe_gather. Counters: peak_armed (timers armed at once, seen
//                         by polling), peak_rss_mib (the process's peak RSS while they slept,
//                         reset before the run through /proc/self/clear_refs when the kernel
//                         allows), bytes_per_sleeper ((peak RSS - RSS before) / sleepers: the
//                         sleep task's frame, its slot in the task vector, its heap entry),
//                         wall_s, and all_armed_s (when the millionth timer was armed: the
//                         cost of creating, starting and parking them all). Memory is bounded by what is armed: the frames go back to
//                         the frame caches and the heap array shrinks once they have woken.
//   timeout/armed         co_await timeout(1h, trivial task): the cost of a deadline scope
//                         whose timer is armed and disarmed without firing (ns per timeout),
//                         next to timeout/none (the trivial task alone).
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace std::chrono;
using weft::Task;

struct LatencyStats {
  std::vector<double> samples_us;
  void report(benchmark::State& state) {
    if (samples_us.empty()) return;
    std::sort(samples_us.begin(), samples_us.end());
    const auto at = [&](double q) {
      return samples_us[std::min(samples_us.size() - 1,
                                 static_cast<std::size_t>(q * static_cast<double>(samples_us.size())))];
    };
    state.counters["p50_us"] = at(0.50);
    state.counters["p99_us"] = at(0.99);
    state.counters["max_us"] = samples_us.back();
    state.counters["samples"] = static_cast<double>(samples_us.size());
  }
};

constexpr int kLatenessRounds = 100;

// One sleeper: kLatenessRounds sleeps to deadlines 1-5 ms ahead, each lateness recorded.
Task<void> late_sleeper(unsigned seed, std::vector<double>& out) {
  std::uint64_t rng = 0x9e3779b97f4a7c15ULL * (seed + 1);
  for (int r = 0; r < kLatenessRounds; ++r) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    const auto deadline = steady_clock::now() + microseconds(1000 + rng % 4000);
    co_await weft::sleep_until(deadline);
    out.push_back(duration<double, std::micro>(steady_clock::now() - deadline).count());
  }
}

void BM_TimerLateness(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(2);
  const auto sleepers = static_cast<unsigned>(state.range(0));
  LatencyStats stats;
  for (auto _ : state) {
    std::vector<std::vector<double>> per(sleepers);
    rt.block_on([](std::vector<std::vector<double>>& per) -> Task<void> {
      std::vector<Task<void>> tasks;
      for (unsigned i = 0; i < per.size(); ++i) tasks.push_back(late_sleeper(i, per[i]));
      co_await weft::safe_gather(std::move(tasks));
    }(per));
    for (auto& v : per) stats.samples_us.insert(stats.samples_us.end(), v.begin(), v.end());
  }
  stats.report(state);
}
BENCHMARK(BM_TimerLateness)
    ->Name("lateness")
    ->ArgName("sleepers")
    ->Arg(1)
    ->Arg(100)
    ->Iterations(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The floor for the numbers above: a plain thread's std::this_thread::sleep_until() lateness
// under the same load (the OS's own wake-up latency, with the default timer slack).
void BM_ThreadSleepLateness(benchmark::State& state) {
  LatencyStats stats;
  std::uint64_t rng = 0x9e3779b97f4a7c15ULL;
  for (auto _ : state) {
    for (int r = 0; r < kLatenessRounds; ++r) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const auto deadline = steady_clock::now() + microseconds(1000 + rng % 4000);
      std::this_thread::sleep_until(deadline);
      stats.samples_us.push_back(
          duration<double, std::micro>(steady_clock::now() - deadline).count());
    }
  }
  stats.report(state);
}
BENCHMARK(BM_ThreadSleepLateness)
    ->Name("lateness_os_thread")
    ->Iterations(10)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

constexpr int kMillion = 1'000'000;

void BM_MillionSleepers(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(2);
  for (auto _ : state) {
    const bool peak_reset = weft_bench::reset_peak_rss();
    const double rss_before = weft_bench::rss_bytes();
    const auto start = steady_clock::now();
    weft::Future<void> done = rt.submit([]() -> Task<void> {
      std::vector<Task<void>> tasks;
      tasks.reserve(kMillion);
      std::uint64_t rng = 12345;
      for (int i = 0; i < kMillion; ++i) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tasks.push_back(weft::sleep_for(seconds(1) + microseconds(rng % 100'000)));
      }
      co_await weft::safe_gather(std::move(tasks));
    }());
    std::uint64_t peak_armed = 0;
    double all_armed_s = 0;
    while (!done.wait_for(milliseconds(1))) {
      peak_armed = std::max(peak_armed, rt.stats().timers_armed);
      if (all_armed_s == 0 && peak_armed == kMillion)
        all_armed_s = duration<double>(steady_clock::now() - start).count();
    }
    done.get();
    const double wall = duration<double>(steady_clock::now() - start).count();
    const double peak = weft_bench::peak_rss_bytes();
    state.counters["peak_armed"] = static_cast<double>(peak_armed);
    state.counters["wall_s"] = wall;
    state.counters["all_armed_s"] = all_armed_s;
    state.counters["rss_before_mib"] = rss_before / (1024.0 * 1024.0);
    state.counters["peak_rss_mib"] = peak / (1024.0 * 1024.0);
    state.counters["bytes_per_sleeper"] = (peak - rss_before) / kMillion;
    state.counters["peak_reset"] = peak_reset ? 1 : 0;
    state.counters["armed_after"] = static_cast<double>(rt.stats().timers_armed);
  }
}
BENCHMARK(BM_MillionSleepers)
    ->Name("million_sleepers")
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

Task<int> trivial(int v) { co_return v; }

void BM_Timeout(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(1);
  const bool with_timeout = state.range(0) != 0;
  constexpr int kPerIteration = 10'000;
  weft_bench::Stopwatch watch;
  for (auto _ : state) {
    const long sum = rt.block_on([](bool with_timeout) -> Task<long> {
      long s = 0;
      for (int i = 0; i < kPerIteration; ++i) {
        if (with_timeout) s += co_await weft::timeout(hours(1), trivial(i));
        else s += co_await trivial(i);
      }
      co_return s;
    }(with_timeout));
    benchmark::DoNotOptimize(sum);
  }
  weft_bench::set_ns_per(state, "ns_per_await", watch.elapsed_ns(), kPerIteration);
}
BENCHMARK(BM_Timeout)->Name("timeout")->ArgName("armed")->Arg(0)->Arg(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

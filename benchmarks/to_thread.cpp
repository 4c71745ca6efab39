// to_thread: what a worker does while a blocking call runs, and the cost of a round trip.
//
//   worker_keeps_running  a 1-worker runtime; one task awaits to_thread(sleep 1 s) while a
//                         sibling task keeps gathering batches of 16 tiny tasks (yielding after
//                         each batch) until the call has returned. Reports tasks_completed (tiny tasks finished during the
//                         call) and worker_tasks_run (the worker's RuntimeStats delta). With a
//                         blocked worker both would be about 0.
//   round_trip            a 1-worker runtime awaiting to_thread([] { return 1; }) in a loop;
//                         each await timed: p50_us / p99_us. An idle pool thread takes the call
//                         (a condition-variable wake-up), and the result comes back through the
//                         scheduler's injection queue (the worker is woken from its park).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace std::chrono;
using weft::Task;

constexpr auto kBlockingCall = seconds(1);
constexpr int kBatch = 16;  // tiny tasks per gather

Task<int> tiny(int i) { co_return i & 1; }

Task<long> run_tiny_tasks_until(const std::atomic<bool>& call_returned) {
  long completed = 0;
  while (!call_returned.load(std::memory_order_acquire)) {
    std::vector<Task<int>> batch;
    batch.reserve(kBatch);
    for (int i = 0; i < kBatch; ++i) batch.push_back(tiny(i));
    co_await weft::safe_gather(std::move(batch));
    completed += kBatch;
    // A batch whose tiny tasks all finish inline never returns to the scheduler loop:
    // without a real suspension this task would keep the worker from resuming the task the
    // pool thread hands back (cooperative scheduling, as in asyncio).
    co_await weft::this_task::yield();
  }
  co_return completed;
}

Task<long> blocking_call_beside_tiny_tasks() {
  std::atomic<bool> call_returned{false};
  auto call = [](std::atomic<bool>& returned) -> Task<void> {
    co_await weft::to_thread([] { std::this_thread::sleep_for(kBlockingCall); });
    returned.store(true, std::memory_order_release);
  };
  auto results = co_await weft::safe_gather(call(call_returned), run_tiny_tasks_until(call_returned));
  co_return std::get<1>(results);
}

void BM_ToThreadWorkerKeepsRunning(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(1);
  double completed = 0;
  double tasks_run = 0;
  for (auto _ : state) {
    const auto before = rt.stats().total().tasks_run;
    completed += static_cast<double>(rt.block_on(blocking_call_beside_tiny_tasks()));
    tasks_run += static_cast<double>(rt.stats().total().tasks_run - before);
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["tasks_completed"] = completed / n;
  state.counters["worker_tasks_run"] = tasks_run / n;
}
BENCHMARK(BM_ToThreadWorkerKeepsRunning)->Iterations(2)->UseRealTime()->Unit(benchmark::kMillisecond);

constexpr int kRoundTrips = 20'000;

Task<void> timed_round_trips(std::vector<double>& samples_us) {
  for (int i = 0; i < kRoundTrips; ++i) {
    const auto start = steady_clock::now();
    const int one = co_await weft::to_thread([] { return 1; });
    const auto end = steady_clock::now();
    benchmark::DoNotOptimize(one);
    samples_us.push_back(duration<double, std::micro>(end - start).count());
  }
}

void BM_ToThreadRoundTrip(benchmark::State& state) {
  weft::Runtime& rt = weft_bench::runtime_for(1);
  std::vector<double> samples_us;
  samples_us.reserve(kRoundTrips * 4);
  for (auto _ : state) rt.block_on(timed_round_trips(samples_us));
  std::sort(samples_us.begin(), samples_us.end());
  state.counters["p50_us"] = samples_us[samples_us.size() / 2];
  state.counters["p99_us"] = samples_us[samples_us.size() * 99 / 100];
  state.counters["round_trips"] = static_cast<double>(samples_us.size());
}
BENCHMARK(BM_ToThreadRoundTrip)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

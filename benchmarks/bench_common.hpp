// Shared helpers for weft's benchmarks: runtimes created once per worker count (never timed),
// and the worker-count range every scaling benchmark sweeps.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <weft/detail/frame_allocator.hpp>
#include <weft/weft.hpp>

namespace weft_bench {

// One Runtime per worker count for the whole process: constructing one (threads, deques) is
// not what the benchmarks measure. Runtimes of other worker counts stay parked meanwhile.
inline weft::Runtime& runtime_for(unsigned workers) {
  static std::mutex mutex;
  static std::map<unsigned, std::unique_ptr<weft::Runtime>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<weft::Runtime>& slot = cache[workers];
  if (!slot) {
    weft::RuntimeOptions options;
    options.workers = workers;
    options.name = "bench";
    slot = std::make_unique<weft::Runtime>(options);
  }
  return *slot;
}

inline unsigned max_workers() { return std::max(1u, std::thread::hardware_concurrency()); }

// Adds Arg(w) for w = 1..hardware_concurrency, named "workers".
inline benchmark::internal::Benchmark* sweep_workers(benchmark::internal::Benchmark* b,
                                                     unsigned min = 1) {
  b->ArgName("workers");
  for (unsigned w = min; w <= max_workers(); ++w) b->Arg(w);
  return b;
}

// Wall time of a benchmark's timed loop, measured around it (for loops without paused
// sections): counters such as ns_per_task are computed from it, so that they read as plain
// nanoseconds in every output format.
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double elapsed_ns() const {
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start_)
        .count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Sets counter `name` to loop_ns / (units per iteration * iterations).
inline void set_ns_per(benchmark::State& state, const char* name, double loop_ns,
                       double units_per_iteration) {
  const double units = units_per_iteration * static_cast<double>(state.iterations());
  if (units > 0) state.counters[name] = loop_ns / units;
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace weft_bench

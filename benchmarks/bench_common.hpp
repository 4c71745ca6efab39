// Shared helpers for weft's benchmarks: runtimes created once per worker count (never timed),
// and the worker-count range every scaling benchmark sweeps.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
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

// A counter that reports "nanoseconds per unit" when `units` units of work are done per
// iteration: rate (units per second, scaled by 1e-9) inverted. Uses the benchmark's own
// timing (real time under UseRealTime()).
inline benchmark::Counter ns_per(double units) {
  return benchmark::Counter(units * 1e-9,
                            benchmark::Counter::kIsIterationInvariantRate |
                                benchmark::Counter::kInvert);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace weft_bench

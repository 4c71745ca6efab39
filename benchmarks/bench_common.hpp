// Shared helpers for weft's benchmarks: runtimes created once per worker count (never timed),
// the worker-count range every scaling benchmark sweeps, and the process's resident set.
#pragma once

#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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

// The worker counts to sweep: WEFT_BENCH_WORKERS ("1,2,4"; tools/scale --workers sets it), or
// else 1..hardware_concurrency.
inline std::vector<unsigned> worker_counts() {
  std::vector<unsigned> counts;
  if (const char* list = std::getenv("WEFT_BENCH_WORKERS")) {
    std::stringstream in(list);
    std::string item;
    while (std::getline(in, item, ','))
      if (const unsigned long w = std::strtoul(item.c_str(), nullptr, 10); w > 0)
        counts.push_back(static_cast<unsigned>(w));
  }
  if (counts.empty())
    for (unsigned w = 1; w <= max_workers(); ++w) counts.push_back(w);
  return counts;
}

// Adds Arg(w) for each worker count of worker_counts() from `min` on, named "workers".
inline benchmark::internal::Benchmark* sweep_workers(benchmark::internal::Benchmark* b,
                                                     unsigned min = 1) {
  b->ArgName("workers");
  for (unsigned w : worker_counts())
    if (w >= min) b->Arg(w);
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

// Resident set now, in bytes (/proc/self/statm), or 0.
inline double rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// Peak resident set in bytes (ru_maxrss is in KiB on Linux).
inline double peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) * 1024.0;
}

// Resets the peak RSS to the current RSS (Linux >= 4.0); false when not allowed.
inline bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

// The spin-wait hint weft itself uses.
using weft::detail::cpu_relax;

}  // namespace weft_bench

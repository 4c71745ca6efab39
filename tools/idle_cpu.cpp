// weft_idle_cpu: how much CPU an idle Runtime burns.
//
//   weft_idle_cpu [seconds=1] [workers=2] [limit_ms_per_s=20]
//
// Creates a Runtime, runs one small task (so every worker has started, searched and gone
// idle) and one short sleep (so the timer thread has started, fired and gone idle), then
// sleeps for the given time and measures the process CPU time consumed meanwhile
// (CLOCK_PROCESS_CPUTIME_ID: every thread, user and system). Prints milliseconds of CPU per
// second of idle time, and exits 1 when that is above the limit (workers that spin instead of
// parking), 0 otherwise.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <weft/weft.hpp>

namespace {

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

weft::Task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await weft::safe_gather(fib(n - 1), fib(n - 2));
  co_return a + b;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  const unsigned workers = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 2u;
  const double limit_ms_per_s = argc > 3 ? std::atof(argv[3]) : 20.0;
  if (seconds <= 0 || workers == 0) {
    std::fprintf(stderr, "usage: %s [seconds>0] [workers>0] [limit_ms_per_s]\n", argv[0]);
    return 2;
  }

  weft::RuntimeOptions options;
  options.workers = workers;
  weft::Runtime rt(options);
  const long r = rt.block_on(fib(15));  // small, but enough to get every worker involved
  if (r != 610) {
    std::fprintf(stderr, "weft_idle_cpu: fib(15) = %ld, expected 610\n", r);
    return 2;
  }
  rt.block_on(weft::sleep_for(std::chrono::milliseconds(1)));

  const auto wall0 = std::chrono::steady_clock::now();
  const double cpu0 = process_cpu_seconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const double cpu1 = process_cpu_seconds();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();

  const double ms_per_s = (cpu1 - cpu0) * 1e3 / wall;
  const weft::WorkerStats total = rt.stats().total();
  const bool ok = ms_per_s < limit_ms_per_s;
  std::printf("idle CPU: %.3f ms of CPU per second (%u workers, %.2f s idle, %llu parks); "
              "target < %.0f ms: %s\n",
              ms_per_s, workers, wall, static_cast<unsigned long long>(total.parks),
              limit_ms_per_s, ok ? "OK" : "ABOVE TARGET");
  return ok ? 0 : 1;
}

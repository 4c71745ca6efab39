// weft_bench_scaling: fork-join workloads run by weft, by oneTBB's task_group and serially,
// side by side in one process, for worker counts 1..hardware_concurrency.
//
//   <workload>/serial               plain recursion, one thread
//   <workload>/weft/workers:W       safe_gather, on a Runtime with W workers
//   <workload>/tbb/workers:W        tbb::task_group run+wait in a task_arena(max_concurrency=W)
//                                   (only when built with WEFT_WITH_TBB)
//   fib/weft_group/workers:W        fib through TaskGroup (a group, two spawns, two handle reads)
//   nqueens/weft_vector/workers:W   nqueens with its children in a std::vector
//
// Workloads (one task per recursive call in both parallel versions; "tasks" counts calls):
//   fib      fib(30): 2,692,537 tasks, two children per call
//   skynet   1,000,000 leaves, 10 children per node: 1,111,111 tasks
//   nqueens  all solutions of 12 queens in runtime-benchmarks' shape (board copied into each
//            child, one child per legal column; children in an InlineVector)
//   matmul   512x512 doubles, C += A*B by recursive quadrant split down to 64x64 blocks
//            (two phases of four products per level): 585 tasks
//
// Counters: tasks (per iteration), ns_per_task (iteration real time / tasks),
// heap_allocs_per_task (every operator new in the process during the timed loop, per task:
// frames, containers, the runtime's own; allocation_counter.hpp), and for weft
// steals_per_task. Every result is checked; a wrong one fails the benchmark
// (SkipWithError: "error_occurred" in the JSON output).
//
// Runtimes and arenas are created once per worker count, outside the timed loop, and warmed
// up with one untimed run.
#include <benchmark/benchmark.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "allocation_counter.hpp"
#include "bench_common.hpp"

#ifdef WEFT_BENCH_HAVE_TBB
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#endif

namespace {

using weft::Task;
using weft::safe_gather;
using weft_bench::runtime_for;

// Hides a constant from the optimiser, so that the serial versions are not computed at
// compile time.
template <class T>
T opaque(T v) {
  benchmark::DoNotOptimize(v);
  return v;
}

// ---------------------------------------------------------------------------------------------
// fib
// ---------------------------------------------------------------------------------------------
struct Fib {
  static constexpr const char* name = "fib";
  static constexpr int n = 30;
  using result_type = long;

  static long serial_rec(int k) { return k < 2 ? k : serial_rec(k - 1) + serial_rec(k - 2); }
  static long calls(int k) {  // 2*fib(k+1) - 1
    long a = 0, b = 1;
    for (int i = 0; i < k + 1; ++i) b = std::exchange(a, b) + b;
    return 2 * a - 1;
  }
  static Task<long> weft_rec(int k) {
    if (k < 2) co_return k;
    auto [a, b] = co_await safe_gather(weft_rec(k - 1), weft_rec(k - 2));
    co_return a + b;
  }
#ifdef WEFT_BENCH_HAVE_TBB
  static long tbb_rec(int k) {
    if (k < 2) return k;
    long a = 0;
    tbb::task_group tg;
    tg.run([&] { a = tbb_rec(k - 1); });
    const long b = tbb_rec(k - 2);
    tg.wait();
    return a + b;
  }
  static long tbb() { return tbb_rec(opaque(n)); }
#endif

  static long serial() { return serial_rec(opaque(n)); }
  static Task<long> weft() { return weft_rec(opaque(n)); }
  static double tasks() { return static_cast<double>(calls(n)); }
  static bool check(long r) { return r == 832040; }
};

// fib through TaskGroup as asyncio users write it (a group, two spawns, two handle reads per
// call): weft's structured path beside its fast path.
struct FibTaskGroup : Fib {
  static Task<long> weft_rec(int k) {
    if (k < 2) co_return k;
    std::optional<weft::JoinHandle<long>> a, b;
    co_await weft::task_group([&](weft::TaskGroup& tg) -> Task<void> {
      a.emplace(tg.spawn(weft_rec(k - 1)));
      b.emplace(tg.spawn(weft_rec(k - 2)));
      co_return;
    });
    co_return a->result() + b->result();
  }
  static Task<long> weft() { return weft_rec(opaque(n)); }
};

// ---------------------------------------------------------------------------------------------
// skynet: 10-ary tree of 1M leaves; leaf i returns i; the answer is the sum 0..999,999.
// ---------------------------------------------------------------------------------------------
struct Skynet {
  static constexpr const char* name = "skynet";
  static constexpr long leaves = 1'000'000;
  using result_type = long;

  static long serial_rec(long num, long size) {
    if (size == 1) return num;
    const long sub = size / 10;
    long sum = 0;
    for (long i = 0; i < 10; ++i) sum += serial_rec(num + i * sub, sub);
    return sum;
  }

  static Task<long> weft_rec(long num, long size);
  template <std::size_t... I>
  static auto gather_children(long num, long sub, std::index_sequence<I...>) {
    return safe_gather(weft_rec(num + static_cast<long>(I) * sub, sub)...);
  }

#ifdef WEFT_BENCH_HAVE_TBB
  static long tbb_rec(long num, long size) {
    if (size == 1) return num;
    const long sub = size / 10;
    std::array<long, 10> r{};
    tbb::task_group tg;
    for (long i = 1; i < 10; ++i) tg.run([&r, i, num, sub] { r[i] = tbb_rec(num + i * sub, sub); });
    r[0] = tbb_rec(num, sub);
    tg.wait();
    long sum = 0;
    for (long v : r) sum += v;
    return sum;
  }
  static long tbb() { return tbb_rec(0, opaque(leaves)); }
#endif

  static long serial() { return serial_rec(0, opaque(leaves)); }
  static Task<long> weft() { return weft_rec(0, opaque(leaves)); }
  static double tasks() {
    long t = 0;
    for (long level = 1; level <= leaves; level *= 10) t += level;
    return static_cast<double>(t);
  }
  static bool check(long r) { return r == leaves * (leaves - 1) / 2; }
};

Task<long> Skynet::weft_rec(long num, long size) {
  if (size == 1) co_return num;
  const long sub = size / 10;
  auto results = co_await gather_children(num, sub, std::make_index_sequence<10>{});
  co_return std::apply([](auto... v) { return (v + ...); }, results);
}

// ---------------------------------------------------------------------------------------------
// nqueens: all placements of 12 queens, in runtime-benchmarks' shape: the partial board (one
// column index per row) is copied into each child, one child per legal column, and every
// placement is checked against every earlier row. The number of children is known only at run
// time: weft holds them and their results in the caller's frame (InlineVector), oneTBB in a
// task_group writing into an array of parts. nqueens/weft_vector is weft through std::vector
// (two heap allocations per node), for comparison.
// ---------------------------------------------------------------------------------------------
struct NQueens {
  static constexpr const char* name = "nqueens";
  static constexpr int n = 12;
  using result_type = long;
  using Board = std::array<char, n>;

  // The queen just placed in row `rows - 1` attacks none of the earlier rows.
  static bool legal(int rows, const Board& b) {
    const int last = rows - 1;
    for (int r = 0; r < last; ++r) {
      const int d = b[r] - b[last];
      if (d == 0 || d == last - r || d == r - last) return false;
    }
    return true;
  }

  static long serial_rec(int row, Board b) {
    if (row == n) return 1;
    long sum = 0;
    for (int col = 0; col < n; ++col) {
      b[row] = static_cast<char>(col);
      if (legal(row + 1, b)) sum += serial_rec(row + 1, b);
    }
    return sum;
  }
  static long count_calls(int row, Board b) {
    if (row == n) return 1;
    long calls = 1;
    for (int col = 0; col < n; ++col) {
      b[row] = static_cast<char>(col);
      if (legal(row + 1, b)) calls += count_calls(row + 1, b);
    }
    return calls;
  }

  // `Children`: the container the children are gathered from (InlineVector, std::vector).
  template <class Children>
  static Task<long> weft_rec(int row, Board b) {
    if (row == n) co_return 1;
    Children children;
    for (int col = 0; col < n; ++col) {
      b[row] = static_cast<char>(col);
      if (legal(row + 1, b)) children.push_back(weft_rec<Children>(row + 1, b));
    }
    long sum = 0;
    for (long c : co_await safe_gather(std::move(children))) sum += c;
    co_return sum;
  }

#ifdef WEFT_BENCH_HAVE_TBB
  static long tbb_rec(int row, const Board& b) {
    if (row == n) return 1;
    std::array<Board, n> boards;
    std::array<long, n> parts{};
    tbb::task_group tg;
    for (int col = 0; col < n; ++col) {
      boards[col] = b;
      boards[col][row] = static_cast<char>(col);
      if (legal(row + 1, boards[col]))
        tg.run([&boards, &parts, row, col] { parts[col] = tbb_rec(row + 1, boards[col]); });
    }
    tg.wait();
    long sum = 0;
    for (long v : parts) sum += v;
    return sum;
  }
  static long tbb() { return tbb_rec(opaque(0), Board{}); }
#endif

  static long serial() { return serial_rec(opaque(0), Board{}); }
  static Task<long> weft() {
    return weft_rec<weft::InlineVector<Task<long>, n>>(opaque(0), Board{});
  }
  static double tasks() { return static_cast<double>(count_calls(0, Board{})); }
  static bool check(long r) { return r == 14200; }  // solutions of 12 queens
};

// The same recursion through std::vector (a heap allocation for the tasks and one for the
// results at every node): what a dynamic fan-out cost before InlineVector.
struct NQueensVector : NQueens {
  static Task<long> weft() { return weft_rec<std::vector<Task<long>>>(opaque(0), Board{}); }
};

// ---------------------------------------------------------------------------------------------
// matmul: C += A*B, 512x512 row-major doubles, recursive quadrant split down to 64x64 leaves,
// two phases of four independent products per level (the four quadrants of C in parallel).
// Rows are padded to 520 doubles so that a block's rows do not all fall in the same cache
// sets. Inputs are small integers, so every summation order gives exactly the same result;
// C is not cleared between runs, and after k runs it must equal k * A*B exactly.
// ---------------------------------------------------------------------------------------------
struct MatMul {
  static constexpr const char* name = "matmul";
  static constexpr int size = 512;
  static constexpr int ld = size + 8;
  static constexpr int leaf = 64;
  using result_type = int;

  struct Matrices {
    std::vector<double> a, b, c, expected;
    long runs = 0;  // products accumulated into c since the last reset()
    Matrices() : a(size * ld), b(size * ld), c(size * ld, 0.0), expected(size * ld, 0.0) {
      for (int i = 0; i < size; ++i)
        for (int j = 0; j < size; ++j) {
          a[i * ld + j] = static_cast<double>((i * 7 + j * 3) % 4);
          b[i * ld + j] = static_cast<double>((i * 5 + j * 11) % 3);
        }
      // Reference: the naive triple loop.
      for (int i = 0; i < size; ++i)
        for (int k = 0; k < size; ++k) {
          const double aik = a[i * ld + k];
          for (int j = 0; j < size; ++j) expected[i * ld + j] += aik * b[k * ld + j];
        }
    }
  };
  static Matrices& m() {
    static Matrices matrices;
    return matrices;
  }

  static void kernel(const double* __restrict a, const double* __restrict b, double* __restrict c,
                     int nn) {
    for (int i = 0; i < nn; ++i)
      for (int k = 0; k < nn; ++k) {
        const double aik = a[i * ld + k];
        for (int j = 0; j < nn; ++j) c[i * ld + j] += aik * b[k * ld + j];
      }
  }
  // Quadrant (r, col) of the nn x nn block at p.
  static const double* q(const double* p, int nn, int r, int col) {
    return p + (r * ld + col) * (nn / 2);
  }
  static double* q(double* p, int nn, int r, int col) { return p + (r * ld + col) * (nn / 2); }

  static void serial_rec(const double* a, const double* b, double* c, int nn) {
    if (nn <= leaf) return kernel(a, b, c, nn);
    const int h = nn / 2;
    for (int p = 0; p < 2; ++p)
      for (int r = 0; r < 2; ++r)
        for (int col = 0; col < 2; ++col)
          serial_rec(q(a, nn, r, p), q(b, nn, p, col), q(c, nn, r, col), h);
  }
  static long count_calls(int nn) { return nn <= leaf ? 1 : 1 + 8 * count_calls(nn / 2); }

  static Task<void> weft_rec(const double* a, const double* b, double* c, int nn) {
    if (nn <= leaf) {
      kernel(a, b, c, nn);
      co_return;
    }
    const int h = nn / 2;
    for (int p = 0; p < 2; ++p) {
      co_await safe_gather(weft_rec(q(a, nn, 0, p), q(b, nn, p, 0), q(c, nn, 0, 0), h),
                           weft_rec(q(a, nn, 0, p), q(b, nn, p, 1), q(c, nn, 0, 1), h),
                           weft_rec(q(a, nn, 1, p), q(b, nn, p, 0), q(c, nn, 1, 0), h),
                           weft_rec(q(a, nn, 1, p), q(b, nn, p, 1), q(c, nn, 1, 1), h));
    }
  }
  static Task<int> weft_root() {
    ++m().runs;
    co_await weft_rec(m().a.data(), m().b.data(), m().c.data(), opaque(size));
    co_return 0;
  }

#ifdef WEFT_BENCH_HAVE_TBB
  static void tbb_rec(const double* a, const double* b, double* c, int nn) {
    if (nn <= leaf) return kernel(a, b, c, nn);
    const int h = nn / 2;
    for (int p = 0; p < 2; ++p) {
      tbb::task_group tg;
      tg.run([=] { tbb_rec(q(a, nn, 0, p), q(b, nn, p, 1), q(c, nn, 0, 1), h); });
      tg.run([=] { tbb_rec(q(a, nn, 1, p), q(b, nn, p, 0), q(c, nn, 1, 0), h); });
      tg.run([=] { tbb_rec(q(a, nn, 1, p), q(b, nn, p, 1), q(c, nn, 1, 1), h); });
      tbb_rec(q(a, nn, 0, p), q(b, nn, p, 0), q(c, nn, 0, 0), h);
      tg.wait();
    }
  }
  static int tbb() {
    ++m().runs;
    tbb_rec(m().a.data(), m().b.data(), m().c.data(), opaque(size));
    return 0;
  }
#endif

  static int serial() {
    ++m().runs;
    serial_rec(m().a.data(), m().b.data(), m().c.data(), opaque(size));
    return 0;
  }
  static Task<int> weft() { return weft_root(); }
  static double tasks() { return static_cast<double>(count_calls(size)); }
  static void reset() {
    std::fill(m().c.begin(), m().c.end(), 0.0);
    m().runs = 0;
  }
  static bool check(int r) { return r == 0; }
  static bool final_check() {
    const Matrices& mm = m();
    const double k = static_cast<double>(mm.runs);
    for (int i = 0; i < size; ++i)
      for (int j = 0; j < size; ++j)
        if (mm.c[i * ld + j] != k * mm.expected[i * ld + j]) return false;
    return true;
  }
};

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------
template <class W>
void reset() {
  if constexpr (requires { W::reset(); }) W::reset();
}
template <class W>
bool final_check() {
  if constexpr (requires { W::final_check(); }) return W::final_check();
  return true;
}

void set_common_counters(benchmark::State& state, double tasks, double loop_ns) {
  state.counters["tasks"] = tasks;
  weft_bench::set_ns_per(state, "ns_per_task", loop_ns, tasks);
}

// Runs `once()` (returning the workload's result) untimed to check and warm up, then in the
// timed loop; checks every result, and the accumulated state at the end.
template <class W, class Once>
bool timed_loop(benchmark::State& state, const char* who, Once once, double& loop_ns) {
  reset<W>();
  if (!W::check(once()) || !final_check<W>()) {
    state.SkipWithError((std::string(who) + ": wrong result in the warm-up run").c_str());
    return false;
  }
  reset<W>();
  bool ok = true;
  const std::uint64_t allocations_before = weft_bench::heap_allocations();
  const weft_bench::Stopwatch watch;
  for (auto _ : state) {
    auto r = once();
    benchmark::DoNotOptimize(r);
    if (!W::check(r)) {
      ok = false;
      break;
    }
  }
  loop_ns = watch.elapsed_ns();
  const double allocations =
      static_cast<double>(weft_bench::heap_allocations() - allocations_before);
  if (ok && !final_check<W>()) ok = false;
  if (!ok) state.SkipWithError((std::string(who) + ": wrong result").c_str());
  if (ok) {
    const double total_tasks = W::tasks() * static_cast<double>(state.iterations());
    if (total_tasks > 0) state.counters["heap_allocs_per_task"] = allocations / total_tasks;
  }
  return ok;
}

template <class W>
void bm_serial(benchmark::State& state) {
  double loop_ns = 0;
  if (!timed_loop<W>(state, "serial", [] { return W::serial(); }, loop_ns)) return;
  set_common_counters(state, W::tasks(), loop_ns);
}

template <class W>
void bm_weft(benchmark::State& state) {
  const auto workers = static_cast<unsigned>(state.range(0));
  weft::Runtime& rt = runtime_for(workers);
  // Counted from the first timed run (the warm-up inside timed_loop fills the frame caches).
  weft::WorkerStats before;
  int runs = 0;
  double loop_ns = 0;
  const bool ok = timed_loop<W>(
      state, "weft",
      [&] {
        if (++runs == 2) before = rt.stats().total();
        return rt.block_on(W::weft());
      },
      loop_ns);
  if (!ok) return;
  const weft::WorkerStats after = rt.stats().total();
  const double tasks = W::tasks();
  const double total_tasks = tasks * static_cast<double>(state.iterations());
  set_common_counters(state, tasks, loop_ns);
  if (total_tasks > 0)
    state.counters["steals_per_task"] =
        static_cast<double>(after.steals - before.steals) / total_tasks;
}

#ifdef WEFT_BENCH_HAVE_TBB
tbb::task_arena& arena_for(unsigned workers) {
  static std::map<unsigned, std::unique_ptr<tbb::task_arena>> cache;
  std::unique_ptr<tbb::task_arena>& slot = cache[workers];
  if (!slot) {
    slot = std::make_unique<tbb::task_arena>(static_cast<int>(workers));
    slot->initialize();
  }
  return *slot;
}

template <class W>
void bm_tbb(benchmark::State& state) {
  tbb::task_arena& arena = arena_for(static_cast<unsigned>(state.range(0)));
  double loop_ns = 0;
  const auto once = [&] {
    typename W::result_type r{};
    arena.execute([&] { r = W::tbb(); });
    return r;
  };
  if (!timed_loop<W>(state, "tbb", once, loop_ns)) return;
  set_common_counters(state, W::tasks(), loop_ns);
}

// oneTBB's workers keep spinning a little after their arena runs dry: let them go to sleep
// before the next benchmark (weft or serial) starts timing.
void let_tbb_settle(const benchmark::State&) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
}
#endif

// Another way to write workload W with weft, registered as <workload>/<label>/workers:W.
template <class W>
void register_weft_variant(const char* label) {
  weft_bench::sweep_workers(
      benchmark::RegisterBenchmark((std::string(W::name) + "/" + label).c_str(), bm_weft<W>)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond));
}

template <class W>
void register_workload() {
  const std::string base = W::name;
  benchmark::RegisterBenchmark((base + "/serial").c_str(), bm_serial<W>)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  weft_bench::sweep_workers(
      benchmark::RegisterBenchmark((base + "/weft").c_str(), bm_weft<W>)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond));
#ifdef WEFT_BENCH_HAVE_TBB
  weft_bench::sweep_workers(
      benchmark::RegisterBenchmark((base + "/tbb").c_str(), bm_tbb<W>)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->Teardown(let_tbb_settle));
#endif
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_workload<Fib>();
  register_weft_variant<FibTaskGroup>("weft_group");
  register_workload<Skynet>();
  register_workload<NQueens>();
  register_weft_variant<NQueensVector>("weft_vector");
  register_workload<MatMul>();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

#include <weft/weft.hpp>
#include <cstdio>
#include <chrono>
using namespace weft;
Task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await safe_gather(fib(n - 1), fib(n - 2));
  co_return a + b;
}
long sfib(int n) { return n < 2 ? n : sfib(n-1) + sfib(n-2); }
int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 30;
  for (unsigned w = 1; w <= 2; ++w) {
    Runtime rt({.workers = w});
    rt.block_on(fib(20));
    auto t0 = std::chrono::steady_clock::now();
    long r = rt.block_on(fib(n));
    auto t1 = std::chrono::steady_clock::now();
    double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    double calls = 2.0 * sfib(n + 1) - 1;
    auto st = rt.stats().total();
    printf("w=%u fib(%d)=%ld %.2f ms, %.2f ns/task steals=%lu heap=%lu\n", w, n, r, ns / 1e6, ns / calls, st.steals, rt.stats().frame_heap_allocations);
  }
}

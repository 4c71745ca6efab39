#include <weft/weft.hpp>

#include <cstdio>

weft::Task<int> square(int x) { co_return x * x; }

weft::Task<int> sum_of_squares() {
  auto [a, b, c] = co_await weft::safe_gather(square(1), square(2), square(3));
  co_return a + b + c;
}

int main() {
  weft::Runtime rt({.workers = 2});
  const int total = rt.block_on(sum_of_squares());
  std::printf("sum of squares: %d\n", total);
  return total == 14 ? 0 : 1;
}

// The seeded per-thread generators of the test builds' switches (fault_injection.cpp,
// perturb.cpp): a thread's k-th draw depends on (seed, stream, k) alone, so a seed replays.
#pragma once

#include <cstdint>

namespace weft::detail {

// splitmix64 of (seed, stream): distinct, well-mixed starting states; never zero.
inline std::uint64_t seeded_state(std::uint64_t seed, std::uint64_t stream) noexcept {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return (z ^ (z >> 31)) | 1;
}

// xorshift64 (13, 7, 17): the next draw.
inline std::uint64_t next_draw(std::uint64_t& x) noexcept {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

}  // namespace weft::detail

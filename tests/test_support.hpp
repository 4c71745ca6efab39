// Helpers shared by weft's tests: sanitizer detection (to scale stress loops down) and a
// hang-guarded spin wait.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

namespace weft_test {

// True in ASan and TSan builds (clang spells it __has_feature, g++ __SANITIZE_*__), where
// stress loops run fewer iterations.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

// Spins (yielding) until `pred()` holds. The conditions tests wait for arrive within
// milliseconds; after a minute the runtime is taken to be stuck and the test fails instead of
// hanging. Not a timing assertion: only a guard against hangs.
template <class Pred>
bool spin_until(Pred pred) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > give_up) {
      ADD_FAILURE() << "condition not reached within 60 s";
      return false;
    }
    std::this_thread::yield();
  }
  return true;
}

// The exception the tests throw: carries which task threw it.
struct TaskError : std::runtime_error {
  explicit TaskError(int id) : std::runtime_error("task " + std::to_string(id)), id(id) {}
  int id;
};

// spin_until's hang guard for loops inside tasks: true, and a test failure, once a loop has run
// for a minute. Not a timing assertion.
class HangGuard {
 public:
  bool expired() {
    if (std::chrono::steady_clock::now() < give_up_) return false;
    ADD_FAILURE() << "condition not reached within 60 s";
    return true;
  }

 private:
  std::chrono::steady_clock::time_point give_up_ =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
};

// A xorshift generator for stress tests: deterministic per seed, no shared state.
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

// A minimal coroutine type that is not weft's: starts eagerly on the calling thread.
struct Eager {
  struct promise_type {
    Eager get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
};

}  // namespace weft_test

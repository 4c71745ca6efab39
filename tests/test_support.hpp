// Helpers shared by weft's tests: sanitizer detection (to scale stress loops down) and a
// hang-guarded spin wait.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
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

}  // namespace weft_test

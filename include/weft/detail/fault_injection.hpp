// Fault injection for weft's own tests (issue 10, lane 1): a seeded switch that, at weft's
// suspension points, makes the task at that point get cancelled, throw, or lose its CPU, each
// with a chosen probability, so that chaos tests reach the paths real failures take.
//
// Compiled in only where WEFT_FAULT_INJECTION is defined: the weft_*_fault_injection CMake
// targets and the Bazel ":weft_fault_injection" library, which the chaos test links. Everywhere
// else the hooks below are empty inline functions and the library has no trace of them: zero
// cost in release builds.
//
// The points:
//   - park: step 1 of every parking primitive (Waiter::begin(): Event, Semaphore, sleeps,
//     wait, as_completed, to_thread), before anything is registered. It may cancel the waiting
//     task's scope (then the ordinary cancelled-before-parking path runs) or yield the thread.
//   - checkpoint: this_task::checkpoint() and this_task::yield(), before the cancellation
//     check. It may also throw InjectedFault, a real failure of the task.
// A cancelled scope is a real cancellation: it reaches the scope's other tasks too, like a
// failure's cancellation of a group. Each thread draws from its own generator, seeded from the
// configured seed and the order in which threads first reach a point: a failing seed replays
// the same decisions per thread (the interleaving itself may differ).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace weft::detail {
class CancelState;
}

namespace weft::detail::fault {

// The failure thrown at a checkpoint. `id` is unique per injected throw in the process.
struct InjectedFault : std::runtime_error {
  explicit InjectedFault(std::uint64_t id)
      : std::runtime_error("weft: injected fault " + std::to_string(id)), id(id) {}
  std::uint64_t id;
};

// Probabilities in parts per million, per point reached.
struct Config {
  std::uint64_t seed = 1;
  std::uint32_t cancel_ppm = 0;  // park and checkpoint points
  std::uint32_t throw_ppm = 0;   // checkpoint points
  std::uint32_t yield_ppm = 0;   // park and checkpoint points
};

// What the points did since the last configure().
struct Counts {
  std::uint64_t points = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t thrown = 0;
  std::uint64_t yielded = 0;
};

#ifdef WEFT_FAULT_INJECTION
inline constexpr bool kEnabled = true;
// Starts injecting with `config` (resets the counts and the per-thread generators).
void configure(const Config& config) noexcept;
// Stops injecting.
void disable() noexcept;
Counts counts() noexcept;
void at_park(CancelState* scope) noexcept;
void at_checkpoint(CancelState* scope);
#else
inline constexpr bool kEnabled = false;
inline void configure(const Config&) noexcept {}
inline void disable() noexcept {}
inline Counts counts() noexcept { return {}; }
inline void at_park(CancelState*) noexcept {}
inline void at_checkpoint(CancelState*) {}
#endif

}  // namespace weft::detail::fault

// Schedule perturbation for weft's own tests (issue 10, lane 2): a seeded switch that, at
// weft's protocol atomics (weft/detail/atomic_shim.hpp), at its suspension points and in the
// choice of steal victims, makes a thread yield its CPU, spin a little, or pick another
// victim, so that interleavings that are rare in ordinary runs show up in ordinary test runs,
// and a failing seed replays.
//
// Compiled in only where WEFT_PERTURB is defined: the weft_*_perturb CMake targets and the
// Bazel ":weft_perturb" library, which the perturbation test links. Everywhere else
// detail::atomic<T> is std::atomic<T> itself and the hooks below are empty inline functions:
// zero cost in release builds.
//
// Protocol.
//   - configure(c) starts a generation: every thread reseeds at its next point from
//     (c.seed, its slot). A worker's slot is its worker index (set when its thread starts);
//     any other thread (a test's main thread, the timer thread, a blocking-pool thread) gets
//     kOtherSlots + n, n counted in the order such threads first reach a point.
//   - Every point (an atomic operation, a suspension, a steal) is one draw from the thread's
//     own generator: nothing is shared between threads but the configuration.
//   - disable() stops the points acting; they draw nothing then.
// Invariants.
//   - The k-th draw of the thread in slot s after configure(c) is a function of (c.seed, s, k)
//     alone (preview() computes it): a seed printed by a failing test replays the same
//     decisions per worker. The interleaving that results may still differ (the OS schedules
//     too); the perturbation only makes bad interleavings likely, not certain.
//   - A point never blocks: it yields, or spins at most max_spin pauses.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace weft::detail::perturb {

// Slots below this are workers (by index); the others are numbered from it.
inline constexpr unsigned kOtherSlots = 1024;
// record(): how many slots and how many draws per slot are kept.
inline constexpr unsigned kRecordSlots = 8;
inline constexpr unsigned kRecordDraws = 256;

// Probabilities in parts per million, per point reached.
struct Config {
  std::uint64_t seed = 1;
  std::uint32_t yield_ppm = 0;   // sched_yield()
  std::uint32_t spin_ppm = 0;    // spin 1..max_spin pauses
  std::uint32_t max_spin = 64;
};

// What the points did since the last configure().
struct Counts {
  std::uint64_t points = 0;
  std::uint64_t yielded = 0;
  std::uint64_t spun = 0;
  std::uint64_t steal_orders = 0;
};

// While configured, the steal victims come from the draws too (steal_order()): the first
// victim to try and the direction to go round the workers.
struct StealOrder {
  std::size_t start;
  bool backwards;
};

#ifdef WEFT_PERTURB
inline constexpr bool kEnabled = true;

// The generator of slot `slot` under `seed`: its first `n` draws (what a thread in that slot
// draws at its first n points after configure()).
std::vector<std::uint64_t> preview(std::uint64_t seed, unsigned slot, std::size_t n);

// True while a configuration is in force. Relaxed: a knob, set by a test before the work it
// perturbs starts (the work's hand-off orders it); a point that reads it late just skips.
inline std::atomic<bool> g_active{false};

void configure(const Config& config) noexcept;
void disable() noexcept;
Counts counts() noexcept;
// Called by a worker thread when it starts: its slot is `index`.
void set_worker_slot(unsigned index) noexcept;
// The first kRecordDraws draws each of the first kRecordSlots slots made since configure()
// (fewer if it made fewer). Read it after the threads that drew have been joined.
std::vector<std::uint64_t> recorded(unsigned slot);

void point() noexcept;
StealOrder steal_order(std::size_t workers) noexcept;
inline bool active() noexcept { return g_active.load(std::memory_order_relaxed); }

inline void at_atomic() noexcept {
  if (active()) point();
}
inline void at_suspend() noexcept { at_atomic(); }
#else
inline constexpr bool kEnabled = false;
inline void configure(const Config&) noexcept {}
inline void disable() noexcept {}
inline Counts counts() noexcept { return {}; }
inline void set_worker_slot(unsigned) noexcept {}
inline void at_atomic() noexcept {}
inline void at_suspend() noexcept {}
inline bool active() noexcept { return false; }
inline StealOrder steal_order(std::size_t) noexcept { return {0, false}; }
#endif

}  // namespace weft::detail::perturb

// The fault injection points (weft/detail/fault_injection.hpp). Empty unless
// WEFT_FAULT_INJECTION is defined.
#include "weft/detail/fault_injection.hpp"

#ifdef WEFT_FAULT_INJECTION

#include <atomic>
#include <thread>

#include "seeded_rng.hpp"
#include "weft/detail/cancel_state.hpp"

namespace weft::detail::fault {
namespace {

// The configuration, read at every point. Relaxed: independent knobs, set by a test before
// the work it perturbs starts (the work's hand-off orders them) and read as plain values.
std::atomic<std::uint64_t> g_seed{1};
std::atomic<std::uint32_t> g_cancel_ppm{0};
std::atomic<std::uint32_t> g_throw_ppm{0};
std::atomic<std::uint32_t> g_yield_ppm{0};
// Bumped by configure(): a thread whose generator belongs to an older configuration reseeds.
// Relaxed: a thread that reads a stale generation reseeds at its next point.
std::atomic<std::uint64_t> g_generation{1};
// Hands out thread numbers for seeding, in the order threads first reach a point. Relaxed:
// only uniqueness matters.
std::atomic<std::uint64_t> g_next_thread{0};
// Relaxed counters: statistics, read after the work ended.
std::atomic<std::uint64_t> g_points{0};
std::atomic<std::uint64_t> g_cancelled{0};
std::atomic<std::uint64_t> g_thrown{0};
std::atomic<std::uint64_t> g_yielded{0};
std::atomic<std::uint64_t> g_next_fault_id{1};

struct ThreadRng {
  std::uint64_t generation = 0;
  std::uint64_t state = 0;
};
thread_local ThreadRng tl_rng;

std::uint32_t draw_ppm() noexcept {
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  if (tl_rng.generation != generation) {
    tl_rng.generation = generation;
    const std::uint64_t thread = g_next_thread.fetch_add(1, std::memory_order_relaxed);
    tl_rng.state = seeded_state(g_seed.load(std::memory_order_relaxed), thread);
  }
  return static_cast<std::uint32_t>(next_draw(tl_rng.state) % 1'000'000);
}

// One draw per point: [0, cancel) cancels, [cancel, cancel + yield) yields, then (checkpoints
// only) [.., .. + throw) throws.
enum class Action { kNone, kCancel, kYield, kThrow };

Action decide(bool may_throw) noexcept {
  const std::uint32_t cancel = g_cancel_ppm.load(std::memory_order_relaxed);
  const std::uint32_t yield = g_yield_ppm.load(std::memory_order_relaxed);
  const std::uint32_t thrown = may_throw ? g_throw_ppm.load(std::memory_order_relaxed) : 0;
  if (cancel == 0 && yield == 0 && thrown == 0) return Action::kNone;
  g_points.fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t r = draw_ppm();
  if (r < cancel) return Action::kCancel;
  if (r < cancel + yield) return Action::kYield;
  if (r < cancel + yield + thrown) return Action::kThrow;
  return Action::kNone;
}

bool act(Action a, CancelState* scope) noexcept {
  switch (a) {
    case Action::kCancel:
      if (scope == nullptr) return false;
      g_cancelled.fetch_add(1, std::memory_order_relaxed);
      scope->cancel();
      return true;
    case Action::kYield:
      g_yielded.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::yield();
      return true;
    default:
      return false;
  }
}

}  // namespace

void configure(const Config& config) noexcept {
  g_seed.store(config.seed, std::memory_order_relaxed);
  g_cancel_ppm.store(config.cancel_ppm, std::memory_order_relaxed);
  g_throw_ppm.store(config.throw_ppm, std::memory_order_relaxed);
  g_yield_ppm.store(config.yield_ppm, std::memory_order_relaxed);
  g_points.store(0, std::memory_order_relaxed);
  g_cancelled.store(0, std::memory_order_relaxed);
  g_thrown.store(0, std::memory_order_relaxed);
  g_yielded.store(0, std::memory_order_relaxed);
  g_next_thread.store(0, std::memory_order_relaxed);
  g_generation.fetch_add(1, std::memory_order_relaxed);
}

void disable() noexcept {
  g_cancel_ppm.store(0, std::memory_order_relaxed);
  g_throw_ppm.store(0, std::memory_order_relaxed);
  g_yield_ppm.store(0, std::memory_order_relaxed);
}

Counts counts() noexcept {
  return Counts{g_points.load(std::memory_order_relaxed), g_cancelled.load(std::memory_order_relaxed),
                g_thrown.load(std::memory_order_relaxed), g_yielded.load(std::memory_order_relaxed)};
}

void at_park(CancelState* scope) noexcept { act(decide(false), scope); }

void at_checkpoint(CancelState* scope) {
  const Action a = decide(true);
  if (a == Action::kThrow) {
    g_thrown.fetch_add(1, std::memory_order_relaxed);
    throw InjectedFault(g_next_fault_id.fetch_add(1, std::memory_order_relaxed));
  }
  act(a, scope);
}

}  // namespace weft::detail::fault

#endif  // WEFT_FAULT_INJECTION

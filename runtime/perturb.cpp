// The schedule perturbation points (weft/detail/perturb.hpp). Empty unless WEFT_PERTURB is
// defined.
#include "weft/detail/perturb.hpp"

#ifdef WEFT_PERTURB

#include <sched.h>

#include <array>

#include "seeded_rng.hpp"
#include "weft/detail/cancel_state.hpp"

namespace weft::detail::perturb {
namespace {

// The configuration. Relaxed: independent knobs, set by a test before the work it perturbs
// starts (the work's hand-off orders them) and read as plain values. These are std::atomic on
// purpose: the shim's own words must not call back into the points.
std::atomic<std::uint64_t> g_seed{1};
std::atomic<std::uint32_t> g_yield_ppm{0};
std::atomic<std::uint32_t> g_spin_ppm{0};
std::atomic<std::uint32_t> g_max_spin{1};
// Bumped by configure(): a thread whose generator belongs to an older configuration reseeds.
// Relaxed: a thread that reads a stale generation reseeds at its next point.
std::atomic<std::uint64_t> g_generation{1};
// Numbers the threads that are not workers, in the order they first reach a point. Relaxed:
// only uniqueness matters.
std::atomic<unsigned> g_next_other{0};
// Relaxed counters: statistics, read after the work ended.
std::atomic<std::uint64_t> g_points{0};
std::atomic<std::uint64_t> g_yielded{0};
std::atomic<std::uint64_t> g_spun{0};
std::atomic<std::uint64_t> g_steal_orders{0};

// The first draws of the first slots. Each cell is written by the one thread in its slot and
// read by the test after that thread was joined (the join orders them): relaxed.
struct Record {
  std::atomic<unsigned> size{0};
  std::array<std::atomic<std::uint64_t>, kRecordDraws> draws{};
};
std::array<Record, kRecordSlots> g_record;

constexpr unsigned kNoSlot = ~0u;

struct ThreadState {
  unsigned slot = kNoSlot;      // kept across configurations (a worker's is its index)
  std::uint64_t generation = 0;
  std::uint64_t state = 0;
  std::uint64_t draws = 0;      // since the thread reseeded
};
thread_local ThreadState tl;

std::uint64_t draw() noexcept {
  const std::uint64_t generation = g_generation.load(std::memory_order_relaxed);
  if (tl.generation != generation) {
    tl.generation = generation;
    if (tl.slot == kNoSlot) tl.slot = kOtherSlots + g_next_other.fetch_add(1, std::memory_order_relaxed);
    tl.state = seeded_state(g_seed.load(std::memory_order_relaxed), tl.slot);
    tl.draws = 0;
  }
  const std::uint64_t value = next_draw(tl.state);
  if (tl.slot < kRecordSlots && tl.draws < kRecordDraws) {
    Record& r = g_record[tl.slot];
    r.draws[tl.draws].store(value, std::memory_order_relaxed);
    r.size.store(static_cast<unsigned>(tl.draws + 1), std::memory_order_relaxed);
  }
  ++tl.draws;
  g_points.fetch_add(1, std::memory_order_relaxed);
  return value;
}

}  // namespace

std::vector<std::uint64_t> preview(std::uint64_t seed, unsigned slot, std::size_t n) {
  std::vector<std::uint64_t> out;
  out.reserve(n);
  std::uint64_t state = seeded_state(seed, slot);
  for (std::size_t i = 0; i < n; ++i) out.push_back(next_draw(state));
  return out;
}

void configure(const Config& config) noexcept {
  g_seed.store(config.seed, std::memory_order_relaxed);
  g_yield_ppm.store(config.yield_ppm, std::memory_order_relaxed);
  g_spin_ppm.store(config.spin_ppm, std::memory_order_relaxed);
  g_max_spin.store(config.max_spin == 0 ? 1 : config.max_spin, std::memory_order_relaxed);
  g_points.store(0, std::memory_order_relaxed);
  g_yielded.store(0, std::memory_order_relaxed);
  g_spun.store(0, std::memory_order_relaxed);
  g_steal_orders.store(0, std::memory_order_relaxed);
  g_next_other.store(0, std::memory_order_relaxed);
  for (Record& r : g_record) r.size.store(0, std::memory_order_relaxed);
  g_generation.fetch_add(1, std::memory_order_relaxed);
  g_active.store(true, std::memory_order_relaxed);
}

void disable() noexcept { g_active.store(false, std::memory_order_relaxed); }

Counts counts() noexcept {
  return Counts{g_points.load(std::memory_order_relaxed), g_yielded.load(std::memory_order_relaxed),
                g_spun.load(std::memory_order_relaxed),
                g_steal_orders.load(std::memory_order_relaxed)};
}

void set_worker_slot(unsigned index) noexcept {
  tl.slot = index;
  tl.generation = 0;  // reseed at the next point
}

std::vector<std::uint64_t> recorded(unsigned slot) {
  std::vector<std::uint64_t> out;
  if (slot >= kRecordSlots) return out;
  const Record& r = g_record[slot];
  const unsigned n = r.size.load(std::memory_order_relaxed);
  for (unsigned i = 0; i < n; ++i) out.push_back(r.draws[i].load(std::memory_order_relaxed));
  return out;
}

// One draw: its low 20 bits pick the action (in parts per million, [0, yield) yields,
// [yield, yield + spin) spins), its high bits how long a spin is.
void point() noexcept {
  const std::uint64_t value = draw();
  const std::uint32_t yield = g_yield_ppm.load(std::memory_order_relaxed);
  const std::uint32_t spin = g_spin_ppm.load(std::memory_order_relaxed);
  const std::uint64_t r = (value & 0xfffff) % 1'000'000;
  if (r < yield) {
    g_yielded.fetch_add(1, std::memory_order_relaxed);
    sched_yield();
  } else if (r < static_cast<std::uint64_t>(yield) + spin) {
    g_spun.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t pauses = 1 + (value >> 32) % g_max_spin.load(std::memory_order_relaxed);
    for (std::uint64_t i = 0; i < pauses; ++i) cpu_relax();
  }
}

StealOrder steal_order(std::size_t workers) noexcept {
  const std::uint64_t value = draw();
  g_steal_orders.fetch_add(1, std::memory_order_relaxed);
  return StealOrder{static_cast<std::size_t>((value >> 1) % workers), (value & 1) != 0};
}

}  // namespace weft::detail::perturb

#endif  // WEFT_PERTURB
